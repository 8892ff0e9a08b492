//! Who may call what. Clients attach `authorization: Bearer TOKEN` to every call; a
//! coordinator configured with tokens knows two roles by them:
//!
//! * the **worker** token: `WorkerService` (register, lease, heartbeat, complete, fail)
//!   and `ArtifactService` (upload and download checkpoints);
//! * the **operator** token: `SweepService` (launch, cancel, retry and every read-only
//!   call) and artifact downloads.
//!
//! Tokens are compared in constant time (their SHA-256 digests, so not even the length
//! leaks) and never printed: [`Secret`]'s `Debug` hides them. Without configured tokens
//! both sides do nothing (loopback and trusted networks).

use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// A token: shown as `***` by `Debug`, so that a logged configuration carries none.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Secret {
        Secret(token.into())
    }

    /// The token itself, to send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Client side: adds the token to every request.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// A client interceptor for `token` (`None`: send nothing).
    pub fn new(token: Option<&str>) -> Result<Bearer, String> {
        match token {
            None => Ok(Bearer(None)),
            Some(t) => {
                let mut v: MetadataValue<Ascii> = format!("Bearer {t}")
                    .parse()
                    .map_err(|_| "the token must be printable ASCII".to_owned())?;
                // Kept out of HPACK's tables and of debug output.
                v.set_sensitive(true);
                Ok(Bearer(Some(v)))
            }
        }
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The two roles a coordinator's tokens grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Workers: the worker and artifact services.
    Worker,
    /// Operators: the sweep service, and artifact downloads.
    Operator,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Worker => "worker",
            Role::Operator => "operator",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Role::Worker => "serve --worker-token",
            Role::Operator => "serve --operator-token",
        }
    }
}

/// The roles a call's token was found to grant; the server interceptor puts it in the
/// request's extensions, for handlers that admit fewer roles than their service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Granted {
    /// The call carried the worker token.
    pub worker: bool,
    /// The call carried the operator token.
    pub operator: bool,
}

impl Granted {
    /// Every role: what a coordinator without tokens grants.
    pub const ALL: Granted = Granted {
        worker: true,
        operator: true,
    };

    /// Whether `role` is granted.
    pub fn has(self, role: Role) -> bool {
        match role {
            Role::Worker => self.worker,
            Role::Operator => self.operator,
        }
    }

    fn any(self) -> bool {
        self.worker || self.operator
    }
}

/// The tokens a coordinator accepts (kept as digests): one per role, or none at all.
#[derive(Clone, Default)]
pub struct Tokens {
    worker: Option<[u8; 32]>,
    operator: Option<[u8; 32]>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("worker", &self.worker.is_some())
            .field("operator", &self.operator.is_some())
            .finish()
    }
}

impl Tokens {
    /// No authentication: every call is accepted.
    pub fn none() -> Tokens {
        Tokens::default()
    }

    /// One token for both roles (a small, trusted set-up).
    pub fn shared(token: &Secret) -> Tokens {
        Tokens {
            worker: Some(digest(token.expose().as_bytes())),
            operator: Some(digest(token.expose().as_bytes())),
        }
    }

    /// A worker token and an operator token; both or neither must be given, and they
    /// must differ (else neither role could be told apart).
    pub fn new(worker: Option<&Secret>, operator: Option<&Secret>) -> Result<Tokens, String> {
        match (worker, operator) {
            (None, None) => Ok(Tokens::none()),
            (Some(w), Some(o)) if w == o => Err(
                "the worker and operator tokens are the same: give two different tokens, or one with --token for both roles".into(),
            ),
            (Some(w), Some(o)) => Ok(Tokens {
                worker: Some(digest(w.expose().as_bytes())),
                operator: Some(digest(o.expose().as_bytes())),
            }),
            (Some(_), None) => Err(
                "a worker token without an operator token would leave the sweep service open: give --operator-token too (or --token for both roles)".into(),
            ),
            (None, Some(_)) => Err(
                "an operator token without a worker token would leave the worker service open: give --worker-token too (or --token for both roles)".into(),
            ),
        }
    }

    /// Whether calls must carry a token.
    pub fn enabled(&self) -> bool {
        self.worker.is_some() || self.operator.is_some()
    }

    /// The roles `token` grants. Both tokens are compared every time, in constant time.
    fn grants(&self, token: &[u8]) -> Granted {
        let sent = digest(token);
        let matches = |expected: &Option<[u8; 32]>| {
            expected.is_some_and(|e| bool::from(e.as_slice().ct_eq(sent.as_slice())))
        };
        Granted {
            worker: matches(&self.worker),
            operator: matches(&self.operator),
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Server side: admits calls whose token grants one of `roles` on `service`, refusing the
/// rest with `UNAUTHENTICATED` (no or unknown token) or `PERMISSION_DENIED` (a known token
/// of another role), each naming the role needed.
#[derive(Clone)]
pub struct RequireRole {
    tokens: Arc<Tokens>,
    service: &'static str,
    roles: &'static [Role],
}

impl RequireRole {
    /// An interceptor for `service` (named in refusals) admitting `roles`.
    pub fn new(tokens: Arc<Tokens>, service: &'static str, roles: &'static [Role]) -> RequireRole {
        RequireRole {
            tokens,
            service,
            roles,
        }
    }
}

/// "the worker token", "the worker or operator token".
fn needed(roles: &[Role]) -> String {
    let names: Vec<&str> = roles.iter().map(|r| r.name()).collect();
    format!("the {} token", names.join(" or "))
}

impl Interceptor for RequireRole {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if !self.tokens.enabled() {
            req.extensions_mut().insert(Granted::ALL);
            return Ok(req);
        }
        let needs = needed(self.roles);
        let Some(header) = req.metadata().get("authorization") else {
            return Err(Status::unauthenticated(format!(
                "{} needs {needs}; the call carried none (--token or ASDSWEEP_TOKEN)",
                self.service
            )));
        };
        let token = header
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .unwrap_or_default();
        let granted = self.tokens.grants(token);
        if !granted.any() {
            return Err(Status::unauthenticated(format!(
                "{} needs {needs}; the token sent is not one this coordinator accepts",
                self.service
            )));
        }
        if !self.roles.iter().any(|&r| granted.has(r)) {
            let sent = if granted.worker { "worker" } else { "operator" };
            return Err(Status::permission_denied(format!(
                "{} needs {needs}; the {sent} token was sent",
                self.service
            )));
        }
        req.extensions_mut().insert(granted);
        Ok(req)
    }
}

/// For a handler that admits fewer roles than its service: refuses the call unless its
/// token granted `role` (calls that passed no [`RequireRole`] are refused too).
pub fn require<T>(req: &Request<T>, role: Role, what: &str) -> Result<(), Status> {
    match req.extensions().get::<Granted>() {
        Some(g) if g.has(role) => Ok(()),
        _ => Err(Status::permission_denied(format!(
            "{what} needs the {} token ({})",
            role.name(),
            role.flag()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent_by(token: Option<&str>) -> Request<()> {
        Bearer::new(token).unwrap().call(Request::new(())).unwrap()
    }

    fn tokens() -> Arc<Tokens> {
        Arc::new(Tokens::new(Some(&Secret::new("w0rker")), Some(&Secret::new("0perator"))).unwrap())
    }

    #[test]
    fn each_role_passes_its_services_and_is_refused_elsewhere_by_name() {
        let mut worker_only = RequireRole::new(tokens(), "WorkerService", &[Role::Worker]);
        let ok = worker_only.call(sent_by(Some("w0rker"))).unwrap();
        assert_eq!(
            ok.extensions().get::<Granted>(),
            Some(&Granted {
                worker: true,
                operator: false
            })
        );
        let denied = worker_only.call(sent_by(Some("0perator"))).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(
            denied
                .message()
                .contains("WorkerService needs the worker token")
        );
        assert!(denied.message().contains("operator token was sent"));

        let wrong = worker_only.call(sent_by(Some("guess"))).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert!(wrong.message().contains("needs the worker token"));
        let missing = worker_only.call(sent_by(None)).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(missing.message().contains("carried none"));

        let mut either =
            RequireRole::new(tokens(), "ArtifactService", &[Role::Worker, Role::Operator]);
        assert!(either.call(sent_by(Some("w0rker"))).is_ok());
        let operator = either.call(sent_by(Some("0perator"))).unwrap();
        assert!(require(&operator, Role::Operator, "Get").is_ok());
        let put = require(&operator, Role::Worker, "ArtifactService.Put").unwrap_err();
        assert_eq!(put.code(), tonic::Code::PermissionDenied);
        assert!(put.message().contains("needs the worker token"));
        let err = either.call(sent_by(None)).unwrap_err();
        assert!(err.message().contains("the worker or operator token"));
    }

    #[test]
    fn a_shared_token_grants_both_roles_and_no_tokens_admit_everyone() {
        let shared = Arc::new(Tokens::shared(&Secret::new("s3cret")));
        let mut sweep = RequireRole::new(shared, "SweepService", &[Role::Operator]);
        let req = sweep.call(sent_by(Some("s3cret"))).unwrap();
        assert_eq!(req.extensions().get::<Granted>(), Some(&Granted::ALL));
        // A prefix of the token is not the token.
        assert!(sweep.call(sent_by(Some("s3cre"))).is_err());

        let mut open =
            RequireRole::new(Arc::new(Tokens::none()), "SweepService", &[Role::Operator]);
        let req = open.call(sent_by(None)).unwrap();
        assert!(require(&req, Role::Worker, "Put").is_ok());
    }

    #[test]
    fn half_configured_or_equal_tokens_are_refused_and_secrets_never_print() {
        let w = Secret::new("a");
        let o = Secret::new("b");
        assert!(
            Tokens::new(Some(&w), None)
                .unwrap_err()
                .contains("--operator-token")
        );
        assert!(
            Tokens::new(None, Some(&o))
                .unwrap_err()
                .contains("--worker-token")
        );
        assert!(
            Tokens::new(Some(&w), Some(&w))
                .unwrap_err()
                .contains("the same")
        );
        assert!(!Tokens::new(None, None).unwrap().enabled());
        let shown = format!(
            "{:?} {:?}",
            Secret::new("hunter2"),
            Tokens::shared(&Secret::new("hunter2"))
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
