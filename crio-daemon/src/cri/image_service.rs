//! The CRI ImageService: dispatch to the module of each RPC family.

use crio_api::cri::{
    ImageFsInfoRequest, ImageFsInfoResponse, ImageStatusRequest, ImageStatusResponse,
    ListImagesRequest, ListImagesResponse, PullImageRequest, PullImageResponse, RemoveImageRequest,
    RemoveImageResponse, image_service_server::ImageService,
};
use crio_api::status::unimplemented;
use tonic::Request;

use super::Rpc;

/// Serves the CRI ImageService.
#[derive(Debug, Clone, Default)]
pub struct ImageApi;

#[tonic::async_trait]
impl ImageService for ImageApi {
    async fn list_images(&self, _req: Request<ListImagesRequest>) -> Rpc<ListImagesResponse> {
        Err(unimplemented("ListImages"))
    }

    async fn image_status(&self, _req: Request<ImageStatusRequest>) -> Rpc<ImageStatusResponse> {
        Err(unimplemented("ImageStatus"))
    }

    async fn pull_image(&self, _req: Request<PullImageRequest>) -> Rpc<PullImageResponse> {
        Err(unimplemented("PullImage"))
    }

    async fn remove_image(&self, _req: Request<RemoveImageRequest>) -> Rpc<RemoveImageResponse> {
        Err(unimplemented("RemoveImage"))
    }

    async fn image_fs_info(&self, _req: Request<ImageFsInfoRequest>) -> Rpc<ImageFsInfoResponse> {
        Err(unimplemented("ImageFsInfo"))
    }
}
