//! UpdateContainerResources and ReopenContainerLog.

use crio_api::cri::{
    ReopenContainerLogRequest, ReopenContainerLogResponse, UpdateContainerResourcesRequest,
    UpdateContainerResourcesResponse,
};

use super::{Answer, State, container_id};

/// UpdateContainerResources.
pub async fn update_resources(
    st: &State,
    req: UpdateContainerResourcesRequest,
) -> Answer<UpdateContainerResourcesResponse> {
    let linux = req
        .linux
        .ok_or_else(|| crio_api::status::invalid_field("linux", "is required"))?;
    st.containers
        .update_resources(container_id(&req.container_id)?, linux)
        .await?;
    Ok(UpdateContainerResourcesResponse {})
}

/// ReopenContainerLog.
pub async fn reopen_log(
    st: &State,
    req: &ReopenContainerLogRequest,
) -> Answer<ReopenContainerLogResponse> {
    st.containers
        .reopen_log(container_id(&req.container_id)?)
        .await?;
    Ok(ReopenContainerLogResponse {})
}
