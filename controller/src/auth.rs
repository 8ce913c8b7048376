//! Who is calling, and what they may do.
//!
//! With a tokens file (`--tokens-file`), every call must carry `authorization: Bearer <token>` naming one of its
//! entries; without one, every caller is `anonymous` with every right (a controller on loopback, `burst dev`).
//!
//! | role     | may                                                                  |
//! |----------|----------------------------------------------------------------------|
//! | `submit` | submit; read, watch and cancel its own jobs; read the cluster's counts |
//! | `worker` | the worker calls (register, poll, report, heartbeat, drain, transfer) |
//! | `admin`  | everything, every job, and the list of workers                       |
//!
//! Refusals are counted and logged with the caller's name or address, never with a token.
//!
//! The tokens file is TOML:
//! ```toml
//! [[token]]
//! name = "alice"      # the owner recorded on the jobs this token submits
//! role = "submit"
//! token = "a long random string"
//! weight = 2          # optional: its fair share of the slots against others' (1 unless set)
//! max_priority = 10   # optional: the highest job priority it may submit at (0 unless set; an admin: any)
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use serde::Deserialize;
use tonic::{Request, Status};
use tracing::warn;

use crate::validate::MAX_PRIORITY;

/// Tokens shorter than this are refused when the file is loaded: they could be guessed.
const MIN_TOKEN_LEN: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Submit,
    Worker,
    Admin,
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// Known from a client certificate (its common name is the name, so a worker's is its id).
    pub from_cert: bool,
    /// The highest job priority it may submit at: [`MAX_PRIORITY`] for an admin, else its token's
    /// `max_priority` (0 unless set, so a submitter may only lower its jobs' priority).
    pub max_priority: i32,
}

impl Principal {
    pub fn anonymous() -> Self {
        Principal::new("anonymous".into(), Role::Admin, false, None)
    }

    /// `max_priority`: what a token allows a submitter (an admin may use any priority).
    pub fn new(name: String, role: Role, from_cert: bool, max_priority: Option<i32>) -> Self {
        let max_priority = if role == Role::Admin { MAX_PRIORITY } else { max_priority.unwrap_or(0) };
        Principal { name, role, from_cert, max_priority }
    }

    /// Whether this caller may see or cancel a job submitted by `owner`.
    pub fn owns(&self, owner: &str) -> bool {
        self.role == Role::Admin || self.name == owner
    }

    /// The owner a listing is restricted to: none for an admin.
    pub fn scope(&self) -> Option<&str> {
        (self.role != Role::Admin).then_some(self.name.as_str())
    }
}

/// What a call needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// A client call (submit, read, cancel).
    Client,
    /// A worker call.
    Worker,
    /// Admin only.
    Admin,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    role: Role,
    token: String,
    /// When the token stops working: an RFC 3339 time with a zone (`2027-01-31T00:00:00Z`), quoted or not.
    #[serde(default)]
    expires: Option<Expiry>,
    /// Fair share: this submitter's slots against others' when jobs of equal priority wait.
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    max_priority: Option<i32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Expiry {
    Datetime(toml::value::Datetime),
    Text(String),
}

impl Expiry {
    /// Milliseconds since the Unix epoch.
    fn unix_ms(&self) -> Result<u64, String> {
        let text = match self {
            Expiry::Datetime(d) => d.to_string(),
            Expiry::Text(t) => t.clone(),
        };
        let at = time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
            .map_err(|_| format!("expires {text:?} is not a time with a zone like 2027-01-31T00:00:00Z"))?;
        Ok(u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
    }
}

/// A token's holder, and when it stops working.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub who: Principal,
    /// Milliseconds since the Unix epoch; `None`: never.
    pub expires_ms: Option<u64>,
    /// Its holder's fair-share weight.
    pub weight: u32,
}

/// Most a fair-share weight may be: one submitter getting a thousand slots for another's one is plenty.
pub const MAX_WEIGHT: u32 = 1000;

/// Token -> the caller it names.
pub type Tokens = HashMap<String, Token>;

/// The tokens a tokens file names, checked: valid names, tokens long enough and unique, at least one.
pub fn read_tokens(path: &Path) -> anyhow::Result<Tokens> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading tokens file {}", path.display()))?;
    let file: TokensFile =
        toml::from_str(&text).with_context(|| format!("tokens file {} is not valid", path.display()))?;
    let mut tokens = HashMap::new();
    for (i, e) in file.token.into_iter().enumerate() {
        crate::validate::name("token name", &e.name).map_err(|m| anyhow::anyhow!("token #{}: {m}", i + 1))?;
        if e.token.len() < MIN_TOKEN_LEN {
            bail!("token #{} ({}) is shorter than {MIN_TOKEN_LEN} characters", i + 1, e.name);
        }
        let expires_ms = e.expires.as_ref().map(Expiry::unix_ms).transpose();
        let expires_ms = expires_ms.map_err(|m| anyhow::anyhow!("token #{} ({}): {m}", i + 1, e.name))?;
        let weight = e.weight.unwrap_or(1);
        if !(1..=MAX_WEIGHT).contains(&weight) {
            bail!("token #{} ({}): weight {weight} is outside 1..={MAX_WEIGHT}", i + 1, e.name);
        }
        if let Some(p) = e.max_priority
            && !(-MAX_PRIORITY..=MAX_PRIORITY).contains(&p)
        {
            bail!("token #{} ({}): max_priority {p} is outside -{MAX_PRIORITY}..={MAX_PRIORITY}", i + 1, e.name);
        }
        if let Some(other) = tokens.values().find(|t: &&Token| t.who.name == e.name && t.weight != weight) {
            bail!(
                "token #{} ({}) gives weight {weight}, another token of {} weight {}: a submitter has one weight",
                i + 1,
                e.name,
                e.name,
                other.weight
            );
        }
        let who = Principal::new(e.name.clone(), e.role, false, e.max_priority);
        if tokens.insert(e.token, Token { who, expires_ms, weight }).is_some() {
            bail!("token #{} ({}) repeats another entry's token", i + 1, e.name);
        }
    }
    if tokens.is_empty() {
        bail!("tokens file {} has no [[token]] entries: nobody could call", path.display());
    }
    Ok(tokens)
}

/// The fair-share weight of each submitter `tokens` weighs other than 1.
pub fn weights(tokens: &Tokens) -> HashMap<String, u32> {
    tokens.values().filter(|t| t.weight != 1).map(|t| (t.who.name.clone(), t.weight)).collect()
}

#[derive(Default)]
pub struct Auth {
    /// Token -> caller; `None`: no tokens file. Behind a lock so an edited file replaces it while calls go on;
    /// held only to look up or swap.
    tokens: Option<std::sync::RwLock<Tokens>>,
    /// Whether the server speaks TLS: then a caller without a token must present a client certificate.
    tls: bool,
    /// Client certificates already read, so a connection's certificate is parsed once, not on every call of a
    /// worker's stream of polls and reports. Held only to look up or insert.
    certs: std::sync::Mutex<HashMap<Vec<u8>, Option<Principal>>>,
    pub unauthenticated: AtomicU64,
    pub denied: AtomicU64,
}

impl Auth {
    /// Everyone is `anonymous` with every right.
    pub fn off() -> Self {
        Auth::default()
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        Ok(Auth { tokens: Some(std::sync::RwLock::new(read_tokens(path)?)), ..Auth::default() })
    }

    /// Uses `tokens` from now on (a tokens file that was edited); false when no tokens file is in use or they
    /// are the ones in use.
    pub fn replace_tokens(&self, tokens: Tokens) -> bool {
        let Some(lock) = &self.tokens else { return false };
        let mut current = lock.write().unwrap_or_else(|p| p.into_inner());
        if *current == tokens {
            return false;
        }
        *current = tokens;
        true
    }

    /// The fair-share weight of each submitter the tokens file weighs other than 1.
    pub fn weights(&self) -> HashMap<String, u32> {
        let Some(lock) = &self.tokens else { return HashMap::new() };
        weights(&lock.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn enabled(&self) -> bool {
        self.tokens.is_some() || self.tls
    }

    /// Callers may also (or, with no tokens file, must) authenticate with a client certificate.
    pub fn with_tls(self, tls: bool) -> Self {
        Auth { tls, ..self }
    }

    /// Refuses a worker call whose certificate names another worker than the one it acts for.
    pub fn check_worker_id(&self, who: &Principal, worker_id: &str) -> Result<(), Status> {
        if !who.from_cert || who.role != Role::Worker || who.name == worker_id {
            return Ok(());
        }
        self.denied.fetch_add(1, Ordering::Relaxed);
        warn!(caller = %who.name, worker = %worker_id, "call refused: a worker certificate used for another worker");
        Err(Status::permission_denied(format!("certificate of worker {} cannot act for {worker_id}", who.name)))
    }

    /// The caller of `req`, if it may make a call that needs `need`.
    pub fn check<T>(&self, req: &Request<T>, need: Need) -> Result<Principal, Status> {
        let who = self.authenticate(req)?;
        let allowed =
            matches!((who.role, need), (Role::Admin, _) | (Role::Submit, Need::Client) | (Role::Worker, Need::Worker));
        if allowed {
            return Ok(who);
        }
        // Relaxed: a counter read only for stats.
        self.denied.fetch_add(1, Ordering::Relaxed);
        warn!(caller = %who.name, role = ?who.role, need = ?need, "call refused: role may not");
        let needed = match need {
            Need::Client => "a submit or admin token or certificate",
            Need::Worker => "the worker role (a worker's token or certificate)",
            Need::Admin => "the admin role",
        };
        let role = format!("{:?}", who.role).to_lowercase();
        Err(Status::permission_denied(format!("{} (role {role}) may not make this call: it needs {needed}", who.name)))
    }

    fn authenticate<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        let header = req.metadata().get(burst_proto::auth::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim);
        let known = token
            .zip(self.tokens.as_ref())
            .and_then(|(t, tokens)| tokens.read().unwrap_or_else(|p| p.into_inner()).get(t).cloned());
        let mut why = if header.is_none() { "no token or client certificate" } else { "unknown token" };
        match known {
            Some(Token { who, expires_ms: Some(at), .. }) if at <= burst_proto::now_ms() => {
                warn!(caller = %who.name, "call refused: token expired");
                why = "token expired";
            }
            Some(Token { who, .. }) => return Ok(who),
            None => {}
        }
        // Over the HTTP side, the connection's peer comes as an extension ([`burst_proto::http::Peer`]).
        let http_peer = || req.extensions().get::<burst_proto::http::Peer>();
        if token.is_none()
            && let Some(certs) = req.peer_certs().or_else(|| http_peer().and_then(|p| p.certs.clone()))
            && let Some(who) = certs.first().and_then(|c| self.cert_holder(c))
        {
            return Ok(who);
        }
        if !self.enabled() {
            return Ok(Principal::anonymous());
        }
        self.unauthenticated.fetch_add(1, Ordering::Relaxed);
        let peer = req.remote_addr().or(http_peer().map(|p| p.addr)).map(|a| a.to_string()).unwrap_or_default();
        warn!(peer = %peer, why, "call refused: not authenticated");
        Err(Status::unauthenticated(format!("{why}: send `authorization: Bearer <token>` (burst --token)")))
    }
}

impl Auth {
    /// The caller a client certificate names (rustls has already verified it against the cluster's CA; the
    /// subject says who and what), remembered per certificate.
    fn cert_holder(&self, der: &[u8]) -> Option<Principal> {
        /// Distinct certificates remembered at most (a cluster's workers and clients); past it the memory starts
        /// over rather than grow.
        const MAX_REMEMBERED: usize = 4096;
        let mut certs = self.certs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(who) = certs.get(der) {
            return who.clone();
        }
        let who = burst_proto::tls::identity(der).and_then(|(name, role)| {
            let role = match role.as_str() {
                "admin" | "controller" => Role::Admin,
                "submit" => Role::Submit,
                "worker" => Role::Worker,
                _ => return None,
            };
            Some(Principal::new(name, role, true, None))
        });
        if certs.len() >= MAX_REMEMBERED {
            certs.clear();
        }
        certs.insert(der.to_vec(), who.clone());
        who
    }

    /// Refuses `who` a job submitted by `owner`, counted like any refusal.
    pub fn check_owner(&self, who: &Principal, id: &str, owner: &str) -> Result<(), Status> {
        if who.owns(owner) {
            return Ok(());
        }
        self.denied.fetch_add(1, Ordering::Relaxed);
        warn!(caller = %who.name, job = %id, "call refused: another submitter's job");
        Err(Status::permission_denied(format!("job {id} belongs to another submitter")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(
            &path,
            "[[token]]\nname = \"alice\"\nrole = \"submit\"\ntoken = \"alice-0123456789abcdef\"\n\
             [[token]]\nname = \"w\"\nrole = \"worker\"\ntoken = \"worker-0123456789abcdef\"\n\
             [[token]]\nname = \"root\"\nrole = \"admin\"\ntoken = \"admin-0123456789abcdef\"\n",
        )
        .unwrap();
        Auth::load(&path).unwrap()
    }

    fn with(token: Option<&str>) -> Request<()> {
        let mut req = Request::new(());
        if let Some(t) = token {
            req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        req
    }

    #[test]
    fn roles_allow_their_calls_and_refuse_the_rest() {
        let a = auth();
        let code = |t: Option<&str>, need| a.check(&with(t), need).map(|p| p.name).map_err(|s| s.code());
        assert_eq!(code(Some("alice-0123456789abcdef"), Need::Client), Ok("alice".into()));
        assert_eq!(code(Some("alice-0123456789abcdef"), Need::Admin), Err(tonic::Code::PermissionDenied));
        assert_eq!(code(Some("alice-0123456789abcdef"), Need::Worker), Err(tonic::Code::PermissionDenied));
        assert_eq!(code(Some("worker-0123456789abcdef"), Need::Worker), Ok("w".into()));
        assert_eq!(code(Some("worker-0123456789abcdef"), Need::Client), Err(tonic::Code::PermissionDenied));
        assert_eq!(code(Some("admin-0123456789abcdef"), Need::Admin), Ok("root".into()));
        assert_eq!(code(None, Need::Client), Err(tonic::Code::Unauthenticated));
        assert_eq!(code(Some("guess-0123456789abcdef"), Need::Client), Err(tonic::Code::Unauthenticated));
        assert_eq!(a.unauthenticated.load(Ordering::Relaxed), 2);
        assert_eq!(a.denied.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn without_a_tokens_file_everyone_is_an_anonymous_admin() {
        let p = Auth::off().check(&with(None), Need::Admin).unwrap();
        assert_eq!(p, Principal::anonymous());
        assert!(p.owns("someone") && p.scope().is_none());
    }

    #[test]
    fn a_weak_or_repeated_token_or_an_empty_file_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        let entry = |n: &str, t: &str| format!("[[token]]\nname = \"{n}\"\nrole = \"submit\"\ntoken = \"{t}\"\n");
        for (text, says) in [
            (entry("a", "short"), "shorter than"),
            (entry("a", "0123456789abcdefg") + &entry("b", "0123456789abcdefg"), "repeats"),
            (String::new(), "no [[token]]"),
            (entry("../x", "0123456789abcdefg"), "not a valid name"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = format!("{:#}", Auth::load(&path).err().unwrap());
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn an_edited_tokens_file_replaces_the_tokens_in_use() {
        let a = auth();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(&path, "[[token]]\nname = \"bob\"\nrole = \"submit\"\ntoken = \"bob-0123456789abcdef\"\n")
            .unwrap();
        let tokens = read_tokens(&path).unwrap();
        assert!(a.replace_tokens(tokens.clone()));
        assert!(!a.replace_tokens(tokens.clone()), "the same tokens: nothing changes");
        let code = |t: &str| a.check(&with(Some(t)), Need::Client).map(|p| p.name).map_err(|s| s.code());
        assert_eq!(code("bob-0123456789abcdef"), Ok("bob".into()));
        assert_eq!(code("alice-0123456789abcdef"), Err(tonic::Code::Unauthenticated), "a removed token is refused");
        assert!(!Auth::off().replace_tokens(tokens), "no tokens file in use: nothing to replace");
    }

    #[test]
    fn an_expired_token_is_unauthenticated_and_an_expiry_needs_a_zone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let entry = |n: &str, expires: &str| {
            format!(
                "[[token]]\nname = \"{n}\"\nrole = \"submit\"\ntoken = \"{n}-0123456789abcdef\"\nexpires = {expires}\n"
            )
        };
        let text = entry("old", "2020-01-01T00:00:00Z") + &entry("new", "\"2999-01-01T00:00:00+02:00\"");
        std::fs::write(&path, text).unwrap();
        let a = Auth::load(&path).unwrap();
        let err = a.check(&with(Some("old-0123456789abcdef")), Need::Client).unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated);
        assert!(err.message().contains("token expired"), "{}", err.message());
        assert_eq!(a.check(&with(Some("new-0123456789abcdef")), Need::Client).unwrap().name, "new");
        assert_eq!(a.unauthenticated.load(Ordering::Relaxed), 1);
        std::fs::write(&path, entry("local", "2030-01-01T00:00:00")).unwrap();
        let err = format!("{:#}", Auth::load(&path).err().unwrap());
        assert!(err.contains("token #1 (local)") && err.contains("with a zone"), "{err}");
    }
}
