//! The CRI ImageService: dispatch to the module of each RPC family.

use crio_api::cri::{
    ImageFsInfoRequest, ImageFsInfoResponse, ImageStatusRequest, ImageStatusResponse,
    ListImagesRequest, ListImagesResponse, PullImageRequest, PullImageResponse, RemoveImageRequest,
    RemoveImageResponse, image_service_server::ImageService,
};
use std::sync::Arc;

use tonic::{Request, Response};

use super::{Rpc, State, image_list, image_pull, image_remove};

/// Serves the CRI ImageService.
#[derive(Clone)]
pub struct ImageApi {
    state: Arc<State>,
}

impl ImageApi {
    /// A service over the daemon's state.
    pub fn new(state: Arc<State>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl ImageService for ImageApi {
    async fn list_images(&self, req: Request<ListImagesRequest>) -> Rpc<ListImagesResponse> {
        Ok(Response::new(image_list::list_images(
            &self.state.images,
            req.get_ref(),
        )))
    }

    async fn image_status(&self, req: Request<ImageStatusRequest>) -> Rpc<ImageStatusResponse> {
        Ok(Response::new(image_list::image_status(
            &self.state.images,
            req.get_ref(),
        )))
    }

    async fn pull_image(&self, req: Request<PullImageRequest>) -> Rpc<PullImageResponse> {
        image_pull::pull_image(&self.state.images, req.into_inner())
            .await
            .map(Response::new)
    }

    async fn remove_image(&self, req: Request<RemoveImageRequest>) -> Rpc<RemoveImageResponse> {
        // Record writes and garbage collection are blocking file work.
        let state = self.state.clone();
        let req = req.into_inner();
        tokio::task::spawn_blocking(move || {
            image_remove::remove_image(&state.images, &state.containers, &req)
        })
        .await
        .map_err(|e| tonic::Status::internal(format!("remove image: {e}")))??;
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn image_fs_info(&self, _req: Request<ImageFsInfoRequest>) -> Rpc<ImageFsInfoResponse> {
        Ok(Response::new(image_remove::image_fs_info(
            &self.state.images,
        )))
    }
}
