//! PullImage.

use crio_api::Status;
use crio_api::cri::{AuthConfig, PullImageRequest, PullImageResponse};
use crio_api::status::invalid_field;
use crio_image::auth::{Credentials, RequestCredentials};

use crate::images::Images;

/// Pulls the requested image and answers its ID.
pub async fn pull_image(
    images: &Images,
    req: PullImageRequest,
) -> Result<PullImageResponse, Status> {
    let name = req.image.map(|s| s.image).unwrap_or_default();
    if name.trim().is_empty() {
        return Err(invalid_field("image.image", "must name an image"));
    }
    let credentials = req.auth.map(credentials).transpose()?.flatten();
    let image = images.pull(&name, credentials, false).await?;
    Ok(PullImageResponse {
        image_ref: image.id.to_string(),
    })
}

/// The request's AuthConfig as credentials for the registry it names
/// (`server_address`, else the image's); None when it carries none.
fn credentials(a: AuthConfig) -> Result<Option<RequestCredentials>, Status> {
    let Some(credentials) = Credentials::from_auth_config(
        &a.username,
        &a.password,
        &a.auth,
        &a.identity_token,
        &a.registry_token,
    )
    .map_err(|e| invalid_field("auth", e))?
    else {
        return Ok(None);
    };
    RequestCredentials::new(credentials, &a.server_address)
        .map(Some)
        .map_err(|e| invalid_field("auth", e))
}
