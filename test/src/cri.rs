//! CRI calls the tests make again and again.

use crio_api::client::CriClient;
use crio_api::cri::{ImageSpec, PullImageRequest};

/// A PullImageRequest for `name`, without credentials.
pub fn pull_request(name: &str) -> PullImageRequest {
    PullImageRequest {
        image: Some(ImageSpec {
            image: name.to_string(),
            ..ImageSpec::default()
        }),
        ..PullImageRequest::default()
    }
}

/// Pulls `name`; the image ID, or the gRPC status.
pub async fn pull(client: &mut CriClient, name: &str) -> Result<String, tonic::Status> {
    client
        .image
        .pull_image(pull_request(name))
        .await
        .map(|r| r.into_inner().image_ref)
}
