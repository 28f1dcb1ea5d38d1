//! The API client, configured as flanneld's `clientcmd.BuildConfigFromFlags`
//! configures it, and this node's name.
//!
//! | flags given | configuration |
//! |-------------|---------------|
//! | neither `--kube-api-url` nor `--kubeconfig-file` | the pod's service account (in-cluster: `KUBERNETES_SERVICE_HOST`, the token and CA under `/var/run/secrets/kubernetes.io/serviceaccount`) |
//! | `--kubeconfig-file` | that file's current context |
//! | `--kube-api-url` | that URL, with the kubeconfig's credentials if one is given, else none |

use k8s_openapi::api::core::v1::Pod;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::Settings;
use crate::{Error, Result};

/// The client for `settings`.
pub async fn connect(settings: &Settings) -> Result<Client> {
    let mut config = match &settings.kubeconfig {
        Some(path) => {
            let what = || format!("reading the kubeconfig {}", path.display());
            let file = Kubeconfig::read_from(path).map_err(|e| Error::kube(what(), e))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| Error::kube(what(), e))?
        }
        None if settings.api_url.is_some() => Config::new(http_uri("http://localhost")?),
        None => Config::incluster().map_err(|e| {
            Error::kube(
                "in-cluster configuration (no --kube-api-url or --kubeconfig-file given: \
                 running outside a pod needs one of them)",
                e,
            )
        })?,
    };
    if let Some(url) = &settings.api_url {
        config.cluster_url = http_uri(url)?;
    }
    tracing::debug!(server = %config.cluster_url, "Kubernetes API client configured");
    Client::try_from(config).map_err(|e| Error::kube("building the API client", e))
}

fn http_uri(url: &str) -> Result<http::Uri> {
    url.parse().map_err(|_| {
        Error::invalid(
            "--kube-api-url",
            url,
            "the API server's URL, like https://10.96.0.1:443",
        )
    })
}

/// This node's name: `NODE_NAME` if set, else our pod's `spec.nodeName`.
pub async fn node_name(client: &Client, settings: &Settings) -> Result<String> {
    if let Some(name) = settings.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Ok(name.clone());
    }
    let Some((namespace, pod)) = &settings.pod else {
        return Err(Error::invalid(
            "NODE_NAME",
            "",
            "this node's name: set NODE_NAME (the DaemonSet's fieldRef spec.nodeName), \
             or POD_NAME and POD_NAMESPACE so ringlay can read its pod's spec.nodeName",
        ));
    };
    let what = || format!("reading pod {namespace}/{pod} for its spec.nodeName");
    let found = Api::<Pod>::namespaced(client.clone(), namespace)
        .get(pod)
        .await
        .map_err(|e| Error::kube(what(), e))?;
    found
        .spec
        .and_then(|s| s.node_name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            Error::invalid(
                "spec.nodeName",
                format!("pod {namespace}/{pod}"),
                "a scheduled pod: set NODE_NAME instead",
            )
        })
}
