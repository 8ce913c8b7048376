//! A real Kubernetes control plane for the operator's tests: etcd, kube-apiserver and kube-controller-manager
//! 1.20.2 (built by `.ci/install-kube` into `target/tools/kube-v1.20.2/bin/`; etcd is Debian's), each started on
//! free 127.0.0.1 ports with a fresh data directory, and stopped when the [`ControlPlane`] drops — also when the
//! test fails, and (PR_SET_PDEATHSIG) when the test process itself dies.
//!
//! The API server runs RBAC, service-account tokens and the ServiceAccount admission plugin as a cluster does;
//! the controller manager runs every controller (StatefulSets make pods, the garbage collector follows owner
//! references, the token controller writes each ServiceAccount's token Secret). There is no scheduler and no
//! kubelet: pods stay Pending unless a test sets their status as a kubelet would ([`ControlPlane::pod_ready`]);
//! for port-forwards a test binds a pod to a Node whose kubelet is a stand-in ([`kubelet::FakeKubelet`]).
//!
//! Only 127.0.0.1 is ever addressed. `--service-cluster-ip-range` is a value Services are given, never dialled.
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// The Kubernetes version the tests run against (what `.ci/install-kube` builds).
pub const VERSION: &str = "v1.20.2";
/// How long the API server may take to answer /readyz (it runs its migrations and bootstrap RBAC first).
const START: Duration = Duration::from_secs(90);
/// How long a test waits on anything the control plane does (a token Secret, garbage collection, a pod).
pub const DEADLINE: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A binary from `target/tools/`, else on PATH.
fn tool(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    dirs.iter().cloned().chain(std::env::split_paths(&path)).map(|d| d.join(name)).find(|p| p.is_file())
}

/// kubectl and helm, from `.ci/install-helm`'s `target/tools/bin/` first.
pub fn user_tool(name: &str) -> Option<PathBuf> {
    tool(name, &[root().join("target/tools/bin")])
}

/// One process of the control plane, killed (SIGKILL) and reaped when dropped.
struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct ControlPlane {
    /// Stopped in reverse order of start (the controller manager first, etcd last) by dropping.
    processes: Vec<Process>,
    /// The API server's base URL, `https://127.0.0.1:<port>`.
    pub url: String,
    /// A kubeconfig for a cluster administrator (group system:masters): for the test's own setup only.
    pub admin_kubeconfig: PathBuf,
    ca: PathBuf,
    /// Data, logs, certificates, kubeconfigs: all removed with the plane.
    pub dir: tempfile::TempDir,
}

/// A free loopback port (bound and released at once: another process may take it first, which fails the start
/// with a clear log line rather than addressing anything else).
/// Tries at starting a control plane, each on new ports.
const START_ATTEMPTS: u32 = 3;

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(name: &'static str, bin: &Path, args: &[String], dir: &Path) -> Process {
    let log = dir.join(format!("{name}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(args).stdin(Stdio::null()).stdout(out.try_clone().unwrap()).stderr(out);
    // SAFETY: prctl(2) in the child before exec; it touches no memory of the parent. The child is killed if the
    // thread that started it (the test's) goes, so a crashed test leaves no control plane behind.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    Process { name, child, log }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

struct Pki {
    ca: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl Pki {
    fn new() -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "burst-test-kubernetes-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Pki { ca_pem: cert.pem(), ca: Issuer::new(params, key) }
    }

    /// A certificate for `cn` in the groups `orgs`, valid for `names` when it is a server's; (cert, key) PEM.
    fn issue(&self, cn: &str, orgs: &[&str], names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        for org in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *org);
        }
        let cert = params.signed_by(&key, &self.ca).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

/// A kubeconfig for `url` trusting `ca`, authenticating with `user` (the `users[].user` YAML fields).
fn kubeconfig(url: &str, ca: &Path, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    \
         certificate-authority: {}\nusers:\n- name: user\n  user:\n{user}\ncontexts:\n- name: test\n  context:\n    \
         cluster: test\n    user: user\n    namespace: default\ncurrent-context: test\n",
        ca.display()
    )
}

impl ControlPlane {
    /// Starts a fresh control plane, or returns `None` after [`burst_proto::testing::missing_tool`] said why
    /// `test` cannot run (which fails the test under CI=true).
    pub async fn start(test: &str) -> Option<ControlPlane> {
        let kube_bin = root().join(format!("target/tools/kube-{VERSION}/bin"));
        let (Some(apiserver), Some(manager)) =
            (tool("kube-apiserver", std::slice::from_ref(&kube_bin)), tool("kube-controller-manager", &[kube_bin]))
        else {
            burst_proto::testing::missing_tool(
                test,
                "kube-apiserver/kube-controller-manager not found (run .ci/install-kube)",
            );
            return None;
        };
        let Some(etcd) = tool("etcd", &[]) else {
            burst_proto::testing::missing_tool(
                test,
                "etcd not found (apt-get install etcd-server; .ci/install-kube does)",
            );
            return None;
        };
        // A port found free may be taken before etcd or the API server binds it (another test's client sockets
        // draw from the same range): then the control plane starts again on other ports, a few times.
        for attempt in 1..=START_ATTEMPTS {
            let ports = (free_port(), free_port(), free_port());
            match Self::start_on(ports, &apiserver, &manager, &etcd, tempfile::tempdir().unwrap()).await {
                Ok(plane) => return Some(plane),
                Err(log) if attempt < START_ATTEMPTS && log.contains("address already in use") => {
                    eprintln!("control plane: a port was taken meanwhile (attempt {attempt}); starting again");
                }
                Err(log) => panic!("the control plane did not start:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// [`ControlPlane::start`] on the given ports (etcd's client and peer ports, the API server's), in `dir`;
    /// `Err` with the logs when a process exits while the API server starts.
    async fn start_on(
        (etcd_port, peer_port, api_port): (u16, u16, u16),
        apiserver: &Path,
        manager: &Path,
        etcd: &Path,
        dir: tempfile::TempDir,
    ) -> Result<ControlPlane, String> {
        let d = dir.path();
        let pki = Pki::new();
        let ca = write(&d.join("ca.pem"), &pki.ca_pem);
        let (cert, key) = pki.issue("kube-apiserver", &[], &["127.0.0.1", "localhost", "kubernetes.default.svc"]);
        let serving = (write(&d.join("apiserver.pem"), &cert), write(&d.join("apiserver-key.pem"), &key));
        let (cert, key) = pki.issue("burst-test-admin", &["system:masters"], &[]);
        let admin = (write(&d.join("admin.pem"), &cert), write(&d.join("admin-key.pem"), &key));
        // Service-account tokens are signed with an ECDSA key (1.20 takes RSA or ECDSA).
        let sa = KeyPair::generate().unwrap();
        let sa_key = write(&d.join("sa-key.pem"), &sa.serialize_pem());
        let sa_pub = write(&d.join("sa.pem"), &sa.public_key_pem());
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let s = |v: &str| v.to_string();
        let etcd_args = vec![
            s("--name=test"),
            format!("--data-dir={}", d.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=test={peer_url}"),
            s("--log-level=warn"),
        ];
        let mut processes = vec![spawn("etcd", etcd, &etcd_args, d)];

        let url = format!("https://127.0.0.1:{api_port}");
        let api_args = vec![
            format!("--etcd-servers={etcd_url}"),
            s("--bind-address=127.0.0.1"),
            s("--advertise-address=127.0.0.1"),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", d.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", serving.0.display()),
            format!("--tls-private-key-file={}", serving.1.display()),
            format!("--client-ca-file={}", ca.display()),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            s("--service-account-issuer=https://kubernetes.default.svc"),
            s("--authorization-mode=RBAC"),
            s("--service-cluster-ip-range=10.96.0.0/16"),
            s("--profiling=false"),
            s("--v=0"),
        ];
        processes.push(spawn("kube-apiserver", apiserver, &api_args, d));
        let admin_kubeconfig = write(
            &d.join("admin.kubeconfig"),
            &kubeconfig(
                &url,
                &ca,
                &format!("    client-certificate: {}\n    client-key: {}\n", admin.0.display(), admin.1.display()),
            ),
        );
        let mut plane = ControlPlane { processes, url, admin_kubeconfig, ca, dir };
        plane.wait_ready().await?;

        let manager_args = vec![
            format!("--kubeconfig={}", plane.admin_kubeconfig.display()),
            s("--use-service-account-credentials"),
            format!("--service-account-private-key-file={}", sa_key.display()),
            format!("--root-ca-file={}", plane.ca.display()),
            s("--controllers=*"),
            s("--leader-elect=false"),
            s("--port=0"),
            s("--secure-port=0"),
            s("--v=0"),
        ];
        let manager = spawn("kube-controller-manager", manager, &manager_args, plane.dir.path());
        plane.processes.push(manager);
        Ok(plane)
    }

    /// Waits until the API server answers /readyz (bootstrap RBAC included); `Err` with the log of a process
    /// that exits meanwhile, a failure with all logs if it takes too long.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let client = self.admin().await;
        let deadline = Instant::now() + START;
        loop {
            let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
            if client.request_text(req).await.is_ok_and(|t| t.trim() == "ok") {
                return Ok(());
            }
            for p in &mut self.processes {
                if let Ok(Some(status)) = p.child.try_wait() {
                    return Err(format!(
                        "{} exited ({status}) while the API server started:\n{}",
                        p.name,
                        tail(&p.log, 40)
                    ));
                }
            }
            if Instant::now() > deadline {
                panic!("kube-apiserver not ready after {START:?}:\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last lines of every process's log, for a failure message.
    pub fn logs(&self) -> String {
        self.processes.iter().map(|p| format!("--- {}:\n{}", p.name, tail(&p.log, 30))).collect::<Vec<_>>().join("\n")
    }

    /// A client as the cluster administrator (for the test's own setup and checks, never for the operator).
    pub async fn admin(&self) -> Client {
        client_for(&self.admin_kubeconfig).await
    }

    /// Creates namespace `ns`.
    pub async fn namespace(&self, ns: &str) {
        let api: Api<Namespace> = Api::all(self.admin().await);
        let meta = ObjectMeta { name: Some(ns.into()), ..ObjectMeta::default() };
        api.create(&PostParams::default(), &Namespace { metadata: meta, ..Namespace::default() }).await.unwrap();
    }

    /// A kubeconfig that authenticates as ServiceAccount `ns/name` with the token the controller manager's token
    /// controller wrote for it (1.20 still makes token Secrets), waiting for that Secret.
    pub async fn service_account_kubeconfig(&self, ns: &str, name: &str) -> PathBuf {
        let admin = self.admin().await;
        let deadline = Instant::now() + DEADLINE;
        let token = loop {
            let sa = Api::<ServiceAccount>::namespaced(admin.clone(), ns).get_opt(name).await.unwrap();
            let secret =
                sa.as_ref().and_then(|sa| sa.secrets.as_ref()).and_then(|s| s.first()).and_then(|r| r.name.clone());
            if let Some(secret) = secret {
                let secret = Api::<Secret>::namespaced(admin.clone(), ns).get(&secret).await.unwrap();
                if let Some(token) = secret.data.as_ref().and_then(|d| d.get("token")) {
                    break String::from_utf8(token.0.clone()).unwrap();
                }
            }
            assert!(Instant::now() < deadline, "no token Secret for ServiceAccount {ns}/{name}:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let path = self.dir.path().join(format!("sa-{ns}-{name}.kubeconfig"));
        write(&path, &kubeconfig(&self.url, &self.ca, &format!("    token: {token}\n")))
    }

    /// Runs kubectl with `kubeconfig`; its output whether it succeeded or not.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        let kubectl = user_tool("kubectl").expect("kubectl (run .ci/install-helm)");
        let home = self.dir.path().join("kubectl-home");
        Command::new(kubectl)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", &home)
            .env("KUBECACHEDIR", home.join("cache"))
            .output()
            .unwrap()
    }

    /// Runs kubectl as the administrator and returns its stdout, failing the test if it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_as(&self.admin_kubeconfig, args);
        assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs helm as the administrator, with its config, cache and data inside the plane's directory.
    pub fn helm(&self, args: &[&str]) -> Output {
        let helm = user_tool("helm").expect("helm (run .ci/install-helm)");
        let home = self.dir.path().join("helm-home");
        Command::new(helm)
            .args(args)
            .env("KUBECONFIG", &self.admin_kubeconfig)
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"))
            .output()
            .unwrap()
    }

    /// Marks pod `ns/name` Running and Ready, as a kubelet would once its containers pass their readiness
    /// probes (there is no kubelet here).
    pub async fn pod_ready(&self, ns: &str, name: &str) {
        use k8s_openapi::api::core::v1::Pod;
        let api: Api<Pod> = Api::namespaced(self.admin().await, ns);
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let status = serde_json::json!({ "status": {
            "phase": "Running",
            "conditions": [
                { "type": "Ready", "status": "True", "lastTransitionTime": now },
                { "type": "ContainersReady", "status": "True", "lastTransitionTime": now },
            ],
        }});
        api.patch_status(name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&status)).await.unwrap();
    }
}

/// The `burst` binary installed as `kubectl-burst` (a symlink, as users install it), run with a kubeconfig.
pub struct KubectlBurst {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl KubectlBurst {
    pub fn new(kubeconfig: &Path) -> KubectlBurst {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_burst"), dir.path().join("kubectl-burst")).unwrap();
        KubectlBurst { dir, kubeconfig: kubeconfig.to_path_buf() }
    }

    /// `kubectl burst <args>`: its exit code, stdout and stderr (trimmed).
    pub fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = Command::new(self.dir.path().join("kubectl-burst"))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("BURST_CONTROLLER")
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    }
}

/// A kube client for a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

/// The most reconciles a BurstCluster that nothing changes may get in `window`: one per refresh period, and one
/// more for a refresh that fell just inside its start.
pub fn refreshes_in(window: Duration) -> f64 {
    let period = burst_operator::cluster::reconcile::REFRESH;
    (window.as_secs_f64() / period.as_secs_f64()).floor() + 1.0
}

/// Polls `check` every 100 ms (the checks ask the API server, some through kubectl) until it gives `Some`,
/// failing with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    burst_proto::testing::eventually_every(Duration::from_millis(100), limit, what, check).await
}

/// `burst operator` as its own process, authenticated by `kubeconfig` (a ServiceAccount's: the operator never
/// runs as the administrator here), serving /metrics on a loopback port; killed when dropped.
pub struct Operator {
    pub child: Child,
    pub http: std::net::SocketAddr,
    pub log: PathBuf,
    pub identity: String,
}

impl Operator {
    /// Starts the operator as `identity` with the chart's environment (its Lease name and namespace) and `args`.
    pub fn start(plane: &ControlPlane, kubeconfig: &Path, identity: &str, args: &[&str]) -> Operator {
        let http: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = plane.dir.path().join(format!("operator-{identity}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_burst"))
            .arg("operator")
            .args(["--http-listen", &http.to_string()])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("BURST_LOG", "info,kube=warn")
            .env("POD_NAME", identity)
            .env("POD_NAMESPACE", "burst-system")
            .env("BURST_OPERATOR_LEASE_NAME", "burst-operator")
            .env_remove("BURST_CONFIG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Operator { child, http, log, identity: identity.to_string() }
    }

    /// What it logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One of its metrics (a counter summed over the label set containing `labels`), `None` while it does not
    /// serve yet.
    pub async fn metric(&self, name: &str, labels: &str) -> Option<f64> {
        let page = http_get(self.http, "/metrics").await?.1;
        let mut sum = None;
        for line in page.lines().filter(|l| l.starts_with(name) && l.contains(labels)) {
            let value: f64 = line.rsplit(' ').next()?.parse().ok()?;
            sum = Some(sum.unwrap_or(0.0) + value);
        }
        sum.or(Some(0.0))
    }

    /// Fails the test if the API server refused any call of the operator's (RBAC narrower than it needs).
    pub fn assert_never_forbidden(&self) {
        let logs = self.logs();
        let forbidden: Vec<&str> =
            logs.lines().filter(|l| l.contains("forbidden") || l.contains("Forbidden")).collect();
        assert!(forbidden.is_empty(), "the operator {} was refused calls:\n{}", self.identity, forbidden.join("\n"));
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET on loopback: (status, body), `None` if nothing answers.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await.ok()?.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// Installs the chart (its CRDs, the operator's ServiceAccount and RBAC) as release `burst` in burst-system with
/// `extra` helm arguments, and returns a kubeconfig for the operator's ServiceAccount.
pub async fn install_chart(plane: &ControlPlane, extra: &[&str]) -> PathBuf {
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/burst");
    let mut args = vec!["install", "burst", chart, "--namespace", "burst-system", "--create-namespace"];
    args.extend(extra);
    let out = plane.helm(&args);
    assert!(
        out.status.success(),
        "helm install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for crd in ["burstclusters.burst.dev", "burstjobs.burst.dev"] {
        let jsonpath = "-o=jsonpath={.status.conditions[?(@.type==\"Established\")].status}";
        eventually(DEADLINE, &format!("CRD {crd} established"), || async {
            (plane.kubectl(&["get", "crd", crd, jsonpath]).trim() == "True").then_some(())
        })
        .await;
    }
    plane.service_account_kubeconfig("burst-system", "burst-operator").await
}

// A TCP proxy a test can black-hole, to cut one process off from the API server (cli/tests/kube_leader.rs).
pub mod kubelet;
pub mod proxy;
