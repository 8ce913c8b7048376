//! A stand-in kubelet for port-forwards, the one kubelet service the tests need: a Node whose kubelet endpoint
//! is a local TLS port, pods bound to it, and at that port an answer to the API server's proxied
//! `/portForward/<ns>/<pod>` WebSocket (`v4.channel.k8s.io`: each port a data and an error channel, each
//! opened by a frame naming the port) that carries the data channel to a local address. So `kubectl
//! port-forward`-style clients reach a process of the test as they would reach a pod.
//!
//! Only the data path is played: no pod lifecycle, no other kubelet API.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference};
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// The Node pods are bound to.
pub const NODE: &str = "fake-node";

/// Serves port-forwards at a local TLS port, carrying each to `target`; stops when dropped.
pub struct FakeKubelet {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKubelet {
    pub async fn start(target: SocketAddr) -> FakeKubelet {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()]).unwrap().self_signed(&key).unwrap();
        let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        // The API server does not verify a kubelet's certificate unless told a CA (it is not, here).
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], der)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        carry(tls, target).await;
                    }
                });
            }
        });
        FakeKubelet { port, task }
    }

    /// Registers the Node with this kubelet's endpoint, binds pod `ns/pod` to it and marks it running.
    pub async fn host(&self, admin: &Client, ns: &str, pod: &str) {
        let nodes: Api<Node> = Api::all(admin.clone());
        let node =
            Node { metadata: ObjectMeta { name: Some(NODE.into()), ..ObjectMeta::default() }, ..Node::default() };
        if nodes.get_opt(NODE).await.unwrap().is_none() {
            nodes.create(&PostParams::default(), &node).await.unwrap();
        }
        // Ready with a fresh heartbeat, so that the node lifecycle controller leaves the pod alone for a while.
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let status = serde_json::json!({ "status": {
            "conditions": [{ "type": "Ready", "status": "True", "lastHeartbeatTime": now, "lastTransitionTime": now,
                             "reason": "KubeletReady", "message": "a stand-in kubelet" }],
            "addresses": [{ "type": "InternalIP", "address": "127.0.0.1" }],
            "daemonEndpoints": { "kubeletEndpoint": { "Port": self.port } },
        }});
        nodes.patch_status(NODE, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
        let binding = Binding {
            metadata: ObjectMeta { name: Some(pod.into()), ..ObjectMeta::default() },
            target: ObjectReference {
                kind: Some("Node".into()),
                name: Some(NODE.into()),
                ..ObjectReference::default()
            },
        };
        let url = format!("/api/v1/namespaces/{ns}/pods/{pod}/binding");
        let body = serde_json::to_vec(&binding).unwrap();
        let request = http::Request::post(url).header("content-type", "application/json").body(body).unwrap();
        admin.request::<serde_json::Value>(request).await.unwrap();
    }
}

/// One proxied port-forward: the WebSocket handshake (choosing the v4 channel protocol), each channel's opening
/// frame, then the data channel carried to and from `target`.
async fn carry(stream: tokio_rustls::server::TlsStream<TcpStream>, target: SocketAddr) {
    let mut port = 0u16;
    // tungstenite's callback type fixes the (large) error type.
    #[allow(clippy::result_large_err)]
    let choose = |req: &Request, mut resp: Response| {
        // The port asked for, `?port=N` (the API server passes the client's query on).
        let query = req.uri().query().unwrap_or_default();
        let asked = query.split('&').find_map(|kv| kv.strip_prefix("port=").or_else(|| kv.strip_prefix("ports=")));
        port = asked.and_then(|p| p.parse().ok()).unwrap_or(0);
        let offered = req.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if offered.split(',').any(|p| p.trim() == "v4.channel.k8s.io") {
            resp.headers_mut().insert("sec-websocket-protocol", "v4.channel.k8s.io".parse().unwrap());
        }
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, choose).await else { return };
    let (mut to_client, mut from_client) = ws.split();
    let [lo, hi] = port.to_le_bytes();
    for channel in [0u8, 1] {
        if to_client.send(Message::Binary(vec![channel, lo, hi].into())).await.is_err() {
            return;
        }
    }
    let Ok(upstream) = TcpStream::connect(target).await else { return };
    let (mut up_read, mut up_write) = upstream.into_split();
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        buf[0] = 0;
        loop {
            match up_read.read(&mut buf[1..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_client.send(Message::Binary(buf[..n + 1].to_vec().into())).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to_client.send(Message::Close(None)).await;
    };
    let up = async move {
        while let Some(Ok(message)) = from_client.next().await {
            if message.is_close() {
                break;
            }
            let Message::Binary(data) = message else { continue };
            // Data for the port's data channel (0); nothing comes on its error channel from a client.
            if data.len() > 1 && data[0] == 0 && up_write.write_all(&data[1..]).await.is_err() {
                break;
            }
        }
        let _ = up_write.shutdown().await;
    };
    tokio::join!(down, up);
}
