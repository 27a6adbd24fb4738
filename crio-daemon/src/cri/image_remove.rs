//! RemoveImage and ImageFsInfo.

use crio_api::Status;
use crio_api::cri::{
    FilesystemIdentifier, FilesystemUsage, ImageFsInfoResponse, RemoveImageRequest, UInt64Value,
};
use crio_api::status::invalid_field;
use crio_storage::usage_cache::Measured;

use crate::container::Containers;
use crate::images::Images;

/// Removes (or untags) an image; a missing image is not an error.
pub fn remove_image(
    images: &Images,
    containers: &Containers,
    req: &RemoveImageRequest,
) -> Result<(), Status> {
    let name = req.image.as_ref().map(|s| s.image.as_str()).unwrap_or("");
    if name.is_empty() {
        return Err(invalid_field("image.image", "must name an image"));
    }
    let in_use = |id: &str| {
        containers
            .list()
            .into_iter()
            .filter(|c| c.image_id == id)
            .map(|c| c.id.to_string())
            .collect()
    };
    Ok(images.remove(name, &in_use)?)
}

/// Bytes and inodes used by image layers and by containers' directories,
/// as last measured (never measured here: the kubelet asks every few
/// seconds), each stamped with when it was measured.
pub fn image_fs_info(images: &Images) -> ImageFsInfoResponse {
    let ((layers_dir, containers_dir), figures) = images.fs_usage();
    let report = |path: &std::path::Path, m: Measured| FilesystemUsage {
        timestamp: crio_api::time::unix_nanos(m.at),
        fs_id: Some(FilesystemIdentifier {
            mountpoint: path.display().to_string(),
        }),
        used_bytes: Some(UInt64Value {
            value: m.usage.bytes,
        }),
        inodes_used: Some(UInt64Value {
            value: m.usage.inodes,
        }),
    };
    ImageFsInfoResponse {
        image_filesystems: vec![report(layers_dir, figures.layers)],
        container_filesystems: vec![report(containers_dir, figures.containers)],
    }
}
