//! One file per subcommand: each takes its parsed flags from [`crate::cli`] and wires the
//! layers below.

pub mod certs;
pub mod check;
pub mod crd;
pub mod gate;
pub mod mutate;
pub mod patch_properties;
pub mod serve;

/// A client from the in-cluster service account or a kubeconfig, if there is one.
pub async fn cluster_client() -> Result<kube::Client, String> {
    let config = kube::Config::infer().await.map_err(|e| e.to_string())?;
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// [`cluster_client`], its requests counted in `metrics` (`serve`'s client).
pub async fn counted_cluster_client(
    metrics: &crate::metrics::Metrics,
) -> Result<kube::Client, String> {
    let config = kube::Config::infer().await.map_err(|e| e.to_string())?;
    crate::cluster::requests::counted_client(config, metrics.api_requests.clone(), "serve")
        .map_err(|e| e.to_string())
}
