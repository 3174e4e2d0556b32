//! gRPC servers built from Envoy's own services (so no protoc is needed): a unary one
//! (`envoy.service.auth.v3.Authorization/Check`) and a bidirectional stream
//! (`AggregatedDiscoveryService/StreamAggregatedResources`, echoing each request).

use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use futures_util::{Stream, StreamExt};
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;
use tonic::{Request, Response, Status, Streaming};

/// The test service.
#[derive(Clone, Default)]
pub struct TestService;

#[tonic::async_trait]
impl Authorization for TestService {
    /// Answers OK, unless the request's path says otherwise: `/sleep/MS` waits first,
    /// `/fail` answers UNAVAILABLE.
    async fn check(&self, req: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let path = req
            .get_ref()
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .map(|h| h.path.clone())
            .unwrap_or_default();
        if let Some(ms) = path
            .strip_prefix("/sleep/")
            .and_then(|m| m.parse::<u64>().ok())
        {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if path == "/fail" {
            return Err(Status::unavailable("told to fail"));
        }
        Ok(Response::new(CheckResponse::default()))
    }
}

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for TestService {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        req: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let out = req.into_inner().map(|r| {
            r.map(|r| DiscoveryResponse {
                version_info: r.version_info,
                type_url: r.type_url,
                nonce: r.response_nonce,
                ..Default::default()
            })
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn delta_aggregated_resources(
        &self,
        _req: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "delta is not part of the test service",
        ))
    }
}

/// Starts the gRPC server (h2c) on a free port.
pub async fn start() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(AuthorizationServer::new(TestService))
            .add_service(AggregatedDiscoveryServiceServer::new(TestService))
            .serve_with_incoming(incoming)
            .await;
    });
    (addr, task)
}
