//! Issuing burst certificates: a CA, and certificates that name their holder (common name) and role
//! (organizational unit). `burst certs init` writes them to files; the operator keeps them in a Secret per
//! BurstCluster. Keys are ECDSA P-256.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A certificate and its private key, as PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA that signs burst certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's own certificate and key.
    pub issued: Issued,
}

fn err(what: &str) -> impl FnOnce(rcgen::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl Ca {
    /// A new self-signed CA named `name`, valid for `days` from `at` (Unix seconds).
    pub fn generate(name: &str, days: i64, at: i64) -> Result<Ca, String> {
        let key = KeyPair::generate().map_err(err("a CA key"))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err("the CA"))?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, days, at)?;
        let cert = params.self_signed(&key).map_err(err("the CA"))?;
        let issued = Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
        Ok(Ca { issuer: Issuer::new(params, key), issued })
    }

    /// The CA whose certificate and key these are.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, String> {
        let key = KeyPair::from_pem(key_pem).map_err(err("the CA key"))?;
        let issued = Issued { cert_pem: cert_pem.to_string(), key_pem: key_pem.to_string() };
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(err("the CA certificate"))?;
        Ok(Ca { issuer, issued })
    }

    /// A certificate for `holder` in `role`, valid for `days` from `at` (Unix seconds; negative days: expired
    /// that long ago, for tests), with `names` as its subject alternative names (a server's; a client needs none).
    pub fn issue(&self, holder: &str, role: &str, names: Vec<String>, days: i64, at: i64) -> Result<Issued, String> {
        let key = KeyPair::generate().map_err(err("a key"))?;
        let mut params = CertificateParams::new(names).map_err(err("a certificate"))?;
        params.distinguished_name.push(DnType::CommonName, holder);
        params.distinguished_name.push(DnType::OrganizationalUnitName, role);
        validity(&mut params, days, at)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(err("a certificate"))?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// Valid from an hour before `at` (clock skew) for `days`; a negative `days` ends that long ago. A validity that
/// does not fit a date is an error, not a panic.
fn validity(params: &mut CertificateParams, days: i64, at: i64) -> Result<(), String> {
    let bad = || format!("{days} days from {at} is not a date a certificate can carry");
    let at = time::OffsetDateTime::from_unix_timestamp(at).map_err(|_| bad())?;
    let shift = |d: time::Duration| at.checked_add(d).ok_or_else(bad);
    params.not_before = shift(time::Duration::hours(-1))?;
    if days < 0 {
        params.not_before = shift(time::Duration::days(days.saturating_mul(2)))?;
    }
    params.not_after = shift(time::Duration::days(days))?;
    Ok(())
}

/// Now, in Unix seconds: the `at` of certificates made now.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The subject alternative names of a server certificate: its role name ([`super::CONTROLLER_NAME`] or
/// [`super::WORKER_NAME`]), which clients verify, then `hosts`.
pub fn server_names(role_name: &str, hosts: &[String]) -> Vec<String> {
    std::iter::once(role_name.to_string()).chain(hosts.iter().cloned()).collect()
}

/// When the first certificate in `pem` starts and stops being valid, in seconds since the Unix epoch (`None` if
/// it cannot be read).
pub fn validity_window(pem: &[u8]) -> Option<(i64, i64)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = pem.parse_x509().ok()?;
    Some((cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp()))
}

/// The (name, role) a PEM certificate names (see [`super::identity`]).
pub fn identity_of_pem(pem: &[u8]) -> Option<(String, String)> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    super::identity(&pem.contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_name_holder_and_role_and_chain_to_their_ca() {
        let ca = Ca::generate("test CA", 10, now()).unwrap();
        let again = Ca::from_pem(&ca.issued.cert_pem, &ca.issued.key_pem).unwrap();
        let leaf = again.issue("w-1", "worker", server_names(super::super::WORKER_NAME, &[]), 3, now()).unwrap();
        let der = x509_parser::pem::parse_x509_pem(leaf.cert_pem.as_bytes()).unwrap().1.contents;
        assert_eq!(super::super::identity(&der), Some(("w-1".to_string(), "worker".to_string())));
        let (from, to) = validity_window(leaf.cert_pem.as_bytes()).unwrap();
        assert!((to - from - 3 * 86_400 - 3_600).abs() < 5, "three days and an hour: {}", to - from);
        assert_eq!(validity_window(b"not a certificate"), None);
        let expired = ca.issue("old", "submit", vec![], -1, now()).unwrap();
        assert!(ca.issue("far", "submit", vec![], 10_000_000, now()).unwrap_err().contains("not a date"));
        let (_, to) = validity_window(expired.cert_pem.as_bytes()).unwrap();
        assert!(to < time::OffsetDateTime::now_utc().unix_timestamp());
    }
}
