//! Development certificates (`monitoring-collector certs`): a CA, a server
//! certificate and one client certificate per agent, made with rcgen.
//!
//! These are for development and tests: the CA key sits next to the certificates it
//! signed. Production deployments bring their own PKI.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// rcgen refused a name or failed to sign.
    #[error("cannot make the certificate for {subject}: {source}")]
    Generate {
        /// Whose certificate.
        subject: String,
        /// The cause.
        #[source]
        source: rcgen::Error,
    },
    /// A file exists and `--force` was not given.
    #[error("{path} already exists; pass --force to overwrite")]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A certificate and its key, both PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// The private key (PKCS#8).
    pub key: String,
}

/// A certificate authority that signs server and agent certificates.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    pem: Pem,
}

fn generate(subject: &str, e: rcgen::Error) -> CertsError {
    CertsError::Generate {
        subject: subject.to_owned(),
        source: e,
    }
}

/// The validity window: from an hour ago (clock skew) for `days` days.
fn validity(params: &mut CertificateParams, days: u32) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    params.not_before = epoch + now.saturating_sub(Duration::from_secs(3600));
    params.not_after = epoch + now + Duration::from_secs(u64::from(days) * 86_400);
}

fn named(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name.push(DnType::OrganizationName, "monitoring development");
    name
}

impl DevCa {
    /// A new CA named `name`, valid for `days` days.
    pub fn new(name: &str, days: u32) -> Result<DevCa, CertsError> {
        let key = KeyPair::generate().map_err(|e| generate(name, e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = named(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, days);
        let cert = params.self_signed(&key).map_err(|e| generate(name, e))?;
        let pem = Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        Ok(DevCa {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// The CA's certificate and key.
    pub fn pem(&self) -> &Pem {
        &self.pem
    }

    /// A server certificate for `names` (IP addresses become IP SANs), valid for
    /// `days` days.
    pub fn server(&self, names: &[String], days: u32) -> Result<Pem, CertsError> {
        let subject = names.first().map_or("server", String::as_str);
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| generate(subject, e))?;
        for name in names {
            let san = match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => {
                    SanType::DnsName(name.as_str().try_into().map_err(|e| generate(name, e))?)
                }
            };
            params.subject_alt_names.push(san);
        }
        params.distinguished_name = named(subject);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, days);
        self.sign(subject, params)
    }

    /// A client certificate whose identity is `agent_id` (DNS SAN and CN), valid for
    /// `days` days.
    pub fn agent(&self, agent_id: &str, days: u32) -> Result<Pem, CertsError> {
        let mut params = self.agent_params(agent_id)?;
        validity(&mut params, days);
        self.sign(agent_id, params)
    }

    /// A client certificate for `agent_id` that expired `ago` ago (for tests).
    pub fn expired_agent(&self, agent_id: &str, ago: Duration) -> Result<Pem, CertsError> {
        let mut params = self.agent_params(agent_id)?;
        validity(&mut params, 0);
        params.not_before = params.not_before - Duration::from_secs(86_400) - ago;
        params.not_after -= ago;
        self.sign(agent_id, params)
    }

    fn agent_params(&self, agent_id: &str) -> Result<CertificateParams, CertsError> {
        let mut params =
            CertificateParams::new(vec![agent_id.to_owned()]).map_err(|e| generate(agent_id, e))?;
        params.distinguished_name = named(agent_id);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        Ok(params)
    }

    fn sign(&self, subject: &str, params: CertificateParams) -> Result<Pem, CertsError> {
        let key = KeyPair::generate().map_err(|e| generate(subject, e))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| generate(subject, e))?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

/// What `monitoring-collector certs` writes.
#[derive(Debug, Clone)]
pub struct CertsRequest {
    /// Output directory, created if missing.
    pub out: PathBuf,
    /// One client certificate per agent id.
    pub agent_ids: Vec<String>,
    /// The server certificate's names.
    pub server_names: Vec<String>,
    /// Validity in days.
    pub days: u32,
    /// Overwrite existing files.
    pub force: bool,
}

/// Writes `ca.pem`, `ca-key.pem`, `server.pem`, `server-key.pem` and
/// `agent-<id>.pem`, `agent-<id>-key.pem` per agent into `request.out`; keys are
/// written with mode 0600. Returns the files written. Nothing is written if any
/// target exists and `force` is off.
pub fn write(request: &CertsRequest) -> Result<Vec<PathBuf>, CertsError> {
    let ca = DevCa::new("monitoring development CA", request.days)?;
    let mut files = vec![("ca".to_owned(), ca.pem().clone())];
    files.push((
        "server".into(),
        ca.server(&request.server_names, request.days)?,
    ));
    for id in &request.agent_ids {
        files.push((format!("agent-{id}"), ca.agent(id, request.days)?));
    }
    let targets: Vec<(PathBuf, String, bool)> = files
        .into_iter()
        .flat_map(|(stem, pem)| {
            [
                (request.out.join(format!("{stem}.pem")), pem.cert, false),
                (request.out.join(format!("{stem}-key.pem")), pem.key, true),
            ]
        })
        .collect();
    if !request.force
        && let Some((path, _, _)) = targets.iter().find(|(path, _, _)| path.exists())
    {
        return Err(CertsError::Exists { path: path.clone() });
    }
    std::fs::create_dir_all(&request.out).map_err(|source| CertsError::Write {
        path: request.out.clone(),
        source,
    })?;
    for (path, text, secret) in &targets {
        write_file(path, text, *secret).map_err(|source| CertsError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(targets.into_iter().map(|(path, _, _)| path).collect())
}

fn write_file(path: &Path, text: &str, secret: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mode = if secret { 0o600 } else { 0o644 };
        options.mode(mode);
        let mut file = options.open(path)?;
        // `mode` only applies to new files; an overwritten key keeps no wider mode.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = secret;
        let mut file = options.open(path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn writes_every_file_with_private_keys_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let request = CertsRequest {
            out: dir.path().join("certs"),
            agent_ids: vec!["web-1".into()],
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            days: 30,
            force: false,
        };
        let files = write(&request).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "ca.pem",
                "ca-key.pem",
                "server.pem",
                "server-key.pem",
                "agent-web-1.pem",
                "agent-web-1-key.pem"
            ]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |name: &str| {
                std::fs::metadata(request.out.join(name))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777
            };
            assert_eq!(mode("ca-key.pem"), 0o600);
            assert_eq!(mode("agent-web-1-key.pem"), 0o600);
            assert_eq!(mode("ca.pem"), 0o644);
        }
        let agent = std::fs::read_to_string(request.out.join("agent-web-1.pem")).unwrap();
        let der = rustls_pki_types::CertificateDer::from_pem_slice(agent.as_bytes());
        use rustls_pki_types::pem::PemObject;
        let identity = crate::tls::certificate_identity(&der.unwrap());
        assert_eq!(identity.as_deref(), Some("web-1"));

        let err = write(&request).unwrap_err();
        assert!(matches!(err, CertsError::Exists { .. }), "{err}");
        write(&CertsRequest {
            force: true,
            ..request
        })
        .unwrap();
    }
}
