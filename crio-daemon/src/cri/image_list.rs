//! ListImages and ImageStatus: image records as the CRI shows them.

use crio_api::cri::{
    Image, ImageSpec, ImageStatusRequest, ImageStatusResponse, Int64Value, ListImagesRequest,
    ListImagesResponse,
};
use crio_storage::ImageRecord;

use crate::images::Images;

/// The CRI view of a record: a numeric `User` becomes `uid`, a name `username`.
pub fn to_cri(r: &ImageRecord) -> Image {
    let user = r.user().split(':').next().unwrap_or("");
    let (uid, username) = match user.parse::<i64>() {
        Ok(n) => (Some(Int64Value { value: n }), String::new()),
        Err(_) if user.is_empty() => (Some(Int64Value { value: 0 }), String::new()),
        Err(_) => (None, user.to_string()),
    };
    Image {
        id: r.id.to_string(),
        repo_tags: r.repo_tags.clone(),
        repo_digests: r.repo_digests.clone(),
        size: r.size,
        uid,
        username,
        spec: Some(ImageSpec {
            image: r.id.to_string(),
            ..ImageSpec::default()
        }),
        pinned: r.pinned,
    }
}

/// Every image, or the one the filter names.
pub fn list_images(images: &Images, req: &ListImagesRequest) -> ListImagesResponse {
    let wanted = req
        .filter
        .as_ref()
        .and_then(|f| f.image.as_ref())
        .map(|s| s.image.as_str())
        .filter(|s| !s.is_empty());
    let records = match wanted {
        Some(name) => images.find(name).into_iter().collect(),
        None => images.store().list(),
    };
    ListImagesResponse {
        images: records.iter().map(to_cri).collect(),
    }
}

/// The image, or none when it is not present (not an error, as kubelet expects).
pub fn image_status(images: &Images, req: &ImageStatusRequest) -> ImageStatusResponse {
    let name = req.image.as_ref().map(|s| s.image.as_str()).unwrap_or("");
    let Some(record) = images.find(name) else {
        return ImageStatusResponse::default();
    };
    let info = super::verbose_info(req.verbose.then(|| {
        serde_json::json!({
            "id": record.id,
            "layers": record.layers,
            "pulledAt": record.pulled_at,
            "imageSpec": record.config,
        })
    }));
    ImageStatusResponse {
        image: Some(to_cri(&record)),
        info,
    }
}
