//! Reaching a BurstCluster's controller through the Kubernetes API, as `kubectl burst ...` (the same binary
//! installed as `kubectl-burst`) or `burst --cluster NAME ...` does: the user's kubeconfig finds the cluster, the
//! client certificate the operator issued for them (a `spec.tls.clients` entry, its Secret
//! `<cluster>-client-<client>`) is their credential, and a port-forward to the controller's pod carries the calls.
//! Kubernetes' own RBAC decides who may: reading the client's Secret and creating `pods/portforward`.
//!
//! # Guarantees
//! - The credential is never the CA's key: only the client's own certificate, key and the CA bundle are read,
//!   and held in memory only (never written to disk, so nothing is left behind however the command ends).
//! - Every mistake is one line naming what to do: no such cluster, several to choose from, no client listed, a
//!   Secret the user may not read, no running controller pod, a port-forward the API server refuses.

use burst_operator::crd::BurstCluster;
use burst_operator::names;
use burst_proto::tls::Pem;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use tokio::net::TcpListener;
use tracing::warn;

use crate::client::{ClientTls, Usage};

/// The binary's name as a kubectl plugin: `kubectl burst ...` runs it.
pub const PLUGIN_NAME: &str = "kubectl-burst";

/// Which BurstCluster, and as whom.
#[derive(Clone, Debug, Default)]
pub struct Target {
    /// `None`: the only BurstCluster in the namespace.
    pub cluster: Option<String>,
    /// `None`: the kubeconfig's namespace.
    pub namespace: Option<String>,
    /// `None`: the cluster's only client.
    pub client: Option<String>,
}

/// A controller reached through a port-forward: its local URL and the TLS to talk to it. Dropping it stops the
/// forwarding.
pub struct Reached {
    pub controller: String,
    pub tls: Option<ClientTls>,
    forward: tokio::task::JoinHandle<()>,
}

impl Drop for Reached {
    fn drop(&mut self) {
        self.forward.abort();
    }
}

/// Finds the cluster and the user's client certificate, and opens a local port forwarded to its controller.
pub async fn reach(target: &Target) -> anyhow::Result<Reached> {
    let kube =
        Client::try_default().await.map_err(|e| Usage(format!("no Kubernetes access from your kubeconfig: {e}")))?;
    let ns = target.namespace.clone().unwrap_or_else(|| kube.default_namespace().to_string());
    let bc = cluster(&kube, &ns, target.cluster.as_deref()).await?;
    let name = bc.name_any();
    let tls = match bc.spec.tls.enabled() {
        false if target.client.is_some() => {
            return Err(
                Usage(format!("BurstCluster {name} runs without TLS: it has no clients (drop --identity)")).into()
            );
        }
        false => None,
        true => {
            let client = client_of(&bc, target.client.as_deref())?;
            let secret = names::client_tls(&name, &client);
            let mut data = read_secret(&kube, &ns, &secret).await?;
            let mut take =
                |key: &str| data.remove(key).ok_or_else(|| Usage(format!("Secret {ns}/{secret} has no {key}")));
            let pem = Pem { ca: take("ca.pem")?, identity: Some((take("client.pem")?, take("client-key.pem")?)) };
            Some(ClientTls::Pem(pem))
        }
    };
    let pods: Api<Pod> = Api::namespaced(kube, &ns);
    let pod = controller_pod(&pods, &ns, &name).await?;
    let port = names::CONTROLLER_PORT as u16;
    // One forward opened now, so that a refusal is told here, not as a failed gRPC connection later.
    let first = forward(&pods, &pod, port).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let local = listener.local_addr()?;
    let forward = tokio::spawn(serve(listener, pods, pod, port, first));
    let scheme = if tls.is_some() { "https" } else { "http" };
    Ok(Reached { controller: format!("{scheme}://{local}"), tls, forward })
}

/// The BurstCluster named, or the namespace's only one.
async fn cluster(kube: &Client, ns: &str, name: Option<&str>) -> anyhow::Result<BurstCluster> {
    let api: Api<BurstCluster> = Api::namespaced(kube.clone(), ns);
    if let Some(name) = name {
        return api
            .get_opt(name)
            .await
            .map_err(|e| kube_error(e, &format!("reading BurstCluster {ns}/{name}")))?
            .ok_or_else(|| Usage(format!("no BurstCluster {name} in namespace {ns}")).into());
    }
    let mut all = api
        .list(&ListParams::default())
        .await
        .map_err(|e| kube_error(e, &format!("listing BurstClusters in namespace {ns}")))?
        .items;
    match all.len() {
        1 => Ok(all.remove(0)),
        0 => Err(Usage(format!("no BurstCluster in namespace {ns} (-n NAMESPACE to look elsewhere)")).into()),
        _ => {
            let names: Vec<String> = all.iter().map(ResourceExt::name_any).collect();
            Err(Usage(format!("namespace {ns} has BurstClusters {}: pick one with --cluster", names.join(", "))).into())
        }
    }
}

/// The client to act as: the one named (it must be listed), or the cluster's only one.
fn client_of(bc: &BurstCluster, named: Option<&str>) -> Result<String, Usage> {
    let name = bc.name_any();
    if bc.spec.tls.controller_secret.is_some() {
        return Err(Usage(format!(
            "BurstCluster {name} uses its own TLS Secrets, so the operator issues no client certificates: use \
             --controller with a certificate of your CA (kubectl port-forward svc/{name}-controller 50051)"
        )));
    }
    let listed: Vec<&str> = bc.spec.tls.clients.iter().map(|c| c.name.as_str()).collect();
    if let Some(want) = named {
        return match listed.contains(&want) {
            true => Ok(want.to_string()),
            false if listed.is_empty() => {
                Err(Usage(format!("BurstCluster {name} has no client {want} in spec.tls.clients")))
            }
            false => Err(Usage(format!(
                "BurstCluster {name} has no client {want} in spec.tls.clients (it has {})",
                listed.join(", ")
            ))),
        };
    }
    match listed.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(Usage(format!(
            "BurstCluster {name} lists no clients: add one to spec.tls.clients, e.g. kubectl patch bc {name} --type \
             merge -p '{{\"spec\":{{\"tls\":{{\"clients\":[{{\"name\":\"me\",\"role\":\"submit\"}}]}}}}}}'"
        ))),
        many => Err(Usage(format!("BurstCluster {name} has clients {}: pick one with --identity", many.join(", ")))),
    }
}

async fn read_secret(kube: &Client, ns: &str, secret: &str) -> anyhow::Result<burst_operator::cluster::tls::Data> {
    let api: Api<Secret> = Api::namespaced(kube.clone(), ns);
    let found = api.get_opt(secret).await.map_err(|e| kube_error(e, &format!("reading Secret {ns}/{secret}")))?;
    let found =
        found.ok_or_else(|| Usage(format!("Secret {ns}/{secret} does not exist (yet): the operator writes it")))?;
    Ok(burst_operator::cluster::tls::data_of(&found))
}

/// A ready controller pod of cluster `name` (running, Ready, not being deleted).
async fn controller_pod(pods: &Api<Pod>, ns: &str, name: &str) -> anyhow::Result<String> {
    let selector = format!("{}={name},{}=controller", names::CLUSTER_LABEL, names::ROLE_LABEL);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| kube_error(e, &format!("listing the pods of {ns}/{name}")))?;
    let ready = |p: &&Pod| {
        let status = p.status.as_ref();
        let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or_default();
        p.metadata.deletion_timestamp.is_none()
            && status.and_then(|s| s.phase.as_deref()) == Some("Running")
            && conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    };
    list.items.iter().find(ready).map(ResourceExt::name_any).ok_or_else(|| {
        let why =
            format!("BurstCluster {ns}/{name} has no ready controller pod (kubectl get pods -n {ns} -l {selector})");
        Usage(why).into()
    })
}

/// One port-forward to `pod`; an error the kubelet reports on it (the port refused, say) is printed.
async fn forward(pods: &Api<Pod>, pod: &str, port: u16) -> anyhow::Result<tokio::io::DuplexStream> {
    let mut forwarder =
        pods.portforward(pod, &[port]).await.map_err(|e| kube_error(e, &format!("port-forward to pod {pod}")))?;
    let stream = forwarder
        .take_stream(port)
        .ok_or_else(|| anyhow::anyhow!("port-forward to pod {pod}: no stream for port {port}"))?;
    let errors = forwarder.take_error(port);
    let pod = pod.to_string();
    tokio::spawn(async move {
        if let Some(errors) = errors
            && let Some(error) = errors.await
        {
            warn!(pod, port, error, "port-forward failed");
        }
        let _ = forwarder.join().await;
    });
    Ok(stream)
}

/// Carries each local connection over a port-forward of its own (the first over `first`).
async fn serve(listener: TcpListener, pods: Api<Pod>, pod: String, port: u16, first: tokio::io::DuplexStream) {
    let mut first = Some(first);
    while let Ok((mut local, _)) = listener.accept().await {
        let remote = match first.take() {
            Some(stream) => Ok(stream),
            None => forward(&pods, &pod, port).await,
        };
        match remote {
            Ok(mut remote) => {
                tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut local, &mut remote).await;
                });
            }
            Err(e) => warn!(error = %format!("{e:#}"), "port-forward failed"),
        }
    }
}

/// A Kubernetes API error as one line: what was being done and the API server's message; a refusal for
/// rights says so.
fn kube_error(e: kube::Error, doing: &str) -> anyhow::Error {
    match e {
        kube::Error::Api(s) if s.code == 403 => {
            Usage(format!("{doing}: forbidden for your kubeconfig's user ({})", s.message)).into()
        }
        kube::Error::Api(s) => anyhow::anyhow!("{doing}: {}", s.message),
        other => anyhow::anyhow!("{doing}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_clients(names: &[&str]) -> BurstCluster {
        let mut bc = BurstCluster::new("demo", serde_json::from_value(serde_json::json!({"image": "burst"})).unwrap());
        bc.spec.tls.clients = names
            .iter()
            .map(|n| burst_operator::crd::TlsClient { name: n.to_string(), role: "submit".into() })
            .collect();
        bc
    }

    #[test]
    fn the_client_is_the_one_named_or_the_only_one_and_otherwise_the_error_says_what_to_do() {
        assert_eq!(client_of(&with_clients(&["alice"]), None).unwrap(), "alice");
        assert_eq!(client_of(&with_clients(&["alice", "bob"]), Some("bob")).unwrap(), "bob");
        let many = client_of(&with_clients(&["alice", "bob"]), None).unwrap_err().0;
        assert_eq!(many, "BurstCluster demo has clients alice, bob: pick one with --identity");
        let unknown = client_of(&with_clients(&["alice"]), Some("eve")).unwrap_err().0;
        assert_eq!(unknown, "BurstCluster demo has no client eve in spec.tls.clients (it has alice)");
        let none = client_of(&with_clients(&[]), None).unwrap_err().0;
        assert!(none.starts_with("BurstCluster demo lists no clients: add one to spec.tls.clients"), "{none}");
    }
}
