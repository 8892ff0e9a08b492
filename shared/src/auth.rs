//! Bearer tokens on the wire: clients attach `authorization: Bearer TOKEN` to
//! every call; a server configured with a token refuses calls without it.
//! Without a configured token both sides do nothing (loopback and trusted networks).

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Client side: adds the token to every request.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// A client interceptor for `token` (`None`: send nothing).
    pub fn new(token: Option<&str>) -> Result<Bearer, String> {
        match token {
            None => Ok(Bearer(None)),
            Some(t) => format!("Bearer {t}")
                .parse()
                .map(|v| Bearer(Some(v)))
                .map_err(|_| "the token must be printable ASCII".to_owned()),
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

/// Server side: refuses calls that do not carry the expected token.
#[derive(Clone, Default)]
pub struct RequireBearer(Option<String>);

impl RequireBearer {
    /// A server interceptor expecting `token` (`None`: accept every call).
    pub fn new(token: Option<String>) -> RequireBearer {
        RequireBearer(token.map(|t| format!("Bearer {t}")))
    }
}

impl Interceptor for RequireBearer {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.0 else {
            return Ok(req);
        };
        let sent = req
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        // Compare in time independent of where the first difference is.
        let same = sent.len() == expected.len()
            && sent
                .iter()
                .zip(expected.as_bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(req)
        } else {
            Err(Status::unauthenticated(
                "missing or wrong bearer token (set --token or ASDSWEEP_TOKEN)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent_by(client: Bearer) -> Request<()> {
        let mut c = client;
        c.call(Request::new(())).unwrap()
    }

    #[test]
    fn the_right_token_passes_and_a_missing_or_wrong_one_is_unauthenticated() {
        let mut server = RequireBearer::new(Some("s3cret".into()));
        assert!(
            server
                .call(sent_by(Bearer::new(Some("s3cret")).unwrap()))
                .is_ok()
        );
        let wrong = server
            .call(sent_by(Bearer::new(Some("guess")).unwrap()))
            .unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert!(server.call(sent_by(Bearer::new(None).unwrap())).is_err());
        assert!(
            RequireBearer::new(None)
                .call(sent_by(Bearer::default()))
                .is_ok()
        );
    }
}
