//! The typed client of the key service's admin API: [`ApiClient`] has one method per endpoint
//! the CLI uses, and gives each answer as an [`Answer`] (the service's JSON as sent, for
//! `--output json`, plus its typed reading, for tables) or an [`ApiError`].
//!
//! Ids and filters typed by the user go into the URL as percent-encoded path segments and query
//! pairs, never spliced in as text, so an id like `../keys` stays one segment. The secret goes
//! in the `Authorization` header only.
//!
//! The typed views read only what tables show, and tolerate fields that are absent (older
//! services have no roles) or new: the JSON output passes everything on untouched.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::secret::Secret;

/// How long to wait for a TCP connection before calling the service unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The key service's base URL: `http://host[:port][/prefix]`, without credentials, query or
/// fragment. Plain HTTP only: the CLI carries no TLS stack (see the README).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUrl(Url);

impl ServiceUrl {
    /// A clap value parser: the message names what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(
                    "https:// is not supported: this build of keygate speaks plain HTTP \
                     (reach the service over a private network or an SSH tunnel)"
                        .to_owned(),
                )
            }
            other => return Err(format!("the URL's scheme is `{other}`, not http")),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("`{text}` has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("the URL must not hold credentials: the secret comes from \
                 KEYGATE_ADMIN_SECRET or --secret-file"
                .to_owned());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("`{text}` must not have a query or fragment"));
        }
        Ok(Self(url))
    }

    /// The URL of the API path `segments` (each percent-encoded as one segment) under this base,
    /// with `query` pairs whose value is `Some`.
    fn endpoint(&self, segments: &[&str], query: &[(&str, Option<&str>)]) -> Url {
        let mut url = self.0.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        let present: Vec<_> = query
            .iter()
            .filter_map(|(name, value)| value.map(|v| (*name, v)))
            .collect();
        if !present.is_empty() {
            url.query_pairs_mut().extend_pairs(present);
        }
        url
    }
}

impl std::fmt::Display for ServiceUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a request did not give the answer asked for.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The service answered with an error status. `code` and `message` are from its JSON error
    /// body (`{"error": code, "message": ...}`) when it had one.
    #[error("{message}")]
    Status {
        status: StatusCode,
        code: Option<String>,
        message: String,
        /// The whole error body (`role_in_use` lists the role's holders in it).
        body: Value,
    },
    #[error("cannot reach the key service at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("no answer from the key service at {url} within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("the key service at {url} answered {status}, but not with the JSON expected")]
    Unreadable {
        url: String,
        status: StatusCode,
        #[source]
        source: Option<serde_json::Error>,
    },
    #[error("cannot set up the HTTP client")]
    Setup(#[source] reqwest::Error),
}

/// An answer: the service's JSON exactly as sent, and what the CLI reads from it.
#[derive(Debug)]
pub struct Answer<T> {
    pub json: Value,
    pub view: T,
}

/// A key, OAuth client or tenant admin as the admin API shows it. Clients name their id
/// `client_id` and their secret `client_secret`; keys and tenant admins `id` and `secret`.
#[derive(Debug, Clone, Deserialize)]
pub struct Credential {
    #[serde(alias = "client_id")]
    pub id: String,
    pub name: String,
    pub tenant: String,
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Direct permissions and the roles' together; absent on services without roles.
    #[serde(default)]
    pub effective_permissions: Option<Vec<String>>,
    pub status: String,
    /// The visible start of the current secret (`kg_3f9a…`), to tell which one someone holds;
    /// absent on older services and for credentials made before hints were kept.
    #[serde(default)]
    pub prefix: Option<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// Keys only.
    #[serde(default)]
    pub last_used_at: Option<String>,
    /// In the answers to create and rotate only.
    #[serde(default, alias = "client_secret")]
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct KeyList {
    pub keys: Vec<Credential>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClientList {
    pub clients: Vec<Credential>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TenantAdminList {
    pub tenant_admins: Vec<Credential>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Usage {
    pub key_id: String,
    pub total: u64,
    pub last_used_at: Option<String>,
    pub daily: Vec<DailyCount>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DailyCount {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub count: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Role {
    pub id: String,
    pub tenant: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub permissions: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RoleList {
    pub roles: Vec<Role>,
}

/// `GET /v1/me`: who the secret belongs to.
#[derive(Debug, Clone, Deserialize)]
pub struct Me {
    /// `super_admin` or `tenant_admin`.
    pub kind: String,
    pub id: Option<String>,
    pub name: Option<String>,
    pub tenant: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// `None`: may grant anything.
    pub permissions: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuditEvent {
    /// The service sends a number; read as text so that a string id would do too.
    #[serde(deserialize_with = "id_text")]
    pub id: String,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub tenant: Option<String>,
    pub source: Option<String>,
    pub outcome: String,
    pub request_id: Option<String>,
}

/// An id that may come as a JSON number or string, as text.
fn id_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::String(text) => Ok(text),
        Value::Number(number) => Ok(number.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "an id must be a number or string, not {other}"
        ))),
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    /// The cursor of the next (older) page; `None` on the last.
    pub next: Option<String>,
}

/// Which credentials a create body is for. Keys, clients and tenant admins share the shape.
#[derive(Debug, Clone, Serialize)]
pub struct NewCredential {
    pub name: String,
    pub tenant: String,
    pub permissions: Vec<String>,
    /// Omitted when empty, so that services without roles accept the body.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(flatten)]
    pub expiry: Expiry,
}

/// A new expiry: the service's default lifetime, a lifetime from now, or none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Expiry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub never_expires: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewRole {
    pub tenant: String,
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
}

/// The audit log query: filters, page size and cursor.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub tenant: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target_id: Option<String>,
    /// RFC 3339.
    pub since: Option<String>,
    /// RFC 3339.
    pub until: Option<String>,
    pub after: Option<String>,
    pub limit: Option<u16>,
}

/// The kinds of credential with the same API shape under `/v1/<collection>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Key,
    Client,
    TenantAdmin,
}

impl Kind {
    fn collection(self) -> &'static str {
        match self {
            Self::Key => "keys",
            Self::Client => "clients",
            Self::TenantAdmin => "tenant-admins",
        }
    }

    /// What people call one, in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Client => "client",
            Self::TenantAdmin => "tenant admin",
        }
    }
}

/// The admin API of one key service, as one caller (the secret).
#[derive(Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    base: ServiceUrl,
    secret: Secret,
    timeout_secs: u64,
}

impl ApiClient {
    /// A client that waits at most `timeout` for each answer.
    pub fn new(base: ServiceUrl, secret: Secret, timeout: Duration) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            // Never follow a redirect: it could carry the bearer secret to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("keygate-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ApiError::Setup)?;
        Ok(Self {
            http,
            base,
            secret,
            timeout_secs: timeout.as_secs(),
        })
    }

    pub async fn create(
        &self,
        kind: Kind,
        body: &NewCredential,
    ) -> Result<Answer<Credential>, ApiError> {
        self.json(Method::POST, &[kind.collection()], &[], Some(body))
            .await
    }

    /// Keys (`kind` Key), clients or tenant admins, of `tenant` or all.
    pub async fn list<T: DeserializeOwned>(
        &self,
        kind: Kind,
        tenant: Option<&str>,
    ) -> Result<Answer<T>, ApiError> {
        self.json::<T, ()>(
            Method::GET,
            &[kind.collection()],
            &[("tenant", tenant)],
            None,
        )
        .await
    }

    pub async fn get(&self, kind: Kind, id: &str) -> Result<Answer<Credential>, ApiError> {
        self.json::<_, ()>(Method::GET, &[kind.collection(), id], &[], None)
            .await
    }

    pub async fn revoke(&self, kind: Kind, id: &str) -> Result<Answer<Credential>, ApiError> {
        self.json::<_, ()>(Method::POST, &[kind.collection(), id, "revoke"], &[], None)
            .await
    }

    pub async fn renew(
        &self,
        kind: Kind,
        id: &str,
        expiry: Expiry,
    ) -> Result<Answer<Credential>, ApiError> {
        self.json(
            Method::POST,
            &[kind.collection(), id, "renew"],
            &[],
            Some(&expiry),
        )
        .await
    }

    pub async fn rotate(
        &self,
        kind: Kind,
        id: &str,
        grace_period_secs: u64,
    ) -> Result<Answer<Credential>, ApiError> {
        let body = serde_json::json!({ "grace_period_secs": grace_period_secs });
        self.json(
            Method::POST,
            &[kind.collection(), id, "rotate"],
            &[],
            Some(&body),
        )
        .await
    }

    pub async fn delete(&self, kind: Kind, id: &str) -> Result<(), ApiError> {
        self.no_content(&[kind.collection(), id]).await
    }

    pub async fn usage(&self, id: &str) -> Result<Answer<Usage>, ApiError> {
        self.json::<_, ()>(Method::GET, &["keys", id, "usage"], &[], None)
            .await
    }

    pub async fn roles(&self, tenant: Option<&str>) -> Result<Answer<RoleList>, ApiError> {
        self.json::<_, ()>(Method::GET, &["roles"], &[("tenant", tenant)], None)
            .await
    }

    pub async fn role(&self, id: &str) -> Result<Answer<Role>, ApiError> {
        self.json::<_, ()>(Method::GET, &["roles", id], &[], None)
            .await
    }

    pub async fn create_role(&self, role: &NewRole) -> Result<Answer<Role>, ApiError> {
        self.json(Method::POST, &["roles"], &[], Some(role)).await
    }

    /// Replaces the role's description and permissions.
    pub async fn update_role(
        &self,
        id: &str,
        description: &str,
        permissions: &[String],
    ) -> Result<Answer<Role>, ApiError> {
        let body = serde_json::json!({ "description": description, "permissions": permissions });
        self.json(Method::PUT, &["roles", id], &[], Some(&body))
            .await
    }

    pub async fn delete_role(&self, id: &str) -> Result<(), ApiError> {
        self.no_content(&["roles", id]).await
    }

    pub async fn audit(&self, query: &AuditQuery) -> Result<Answer<AuditPage>, ApiError> {
        let limit = query.limit.map(|l| l.to_string());
        let pairs = [
            ("tenant", query.tenant.as_deref()),
            ("actor", query.actor.as_deref()),
            ("action", query.action.as_deref()),
            ("target_id", query.target_id.as_deref()),
            ("since", query.since.as_deref()),
            ("until", query.until.as_deref()),
            ("after", query.after.as_deref()),
            ("limit", limit.as_deref()),
        ];
        self.json::<_, ()>(Method::GET, &["audit"], &pairs, None)
            .await
    }

    pub async fn me(&self) -> Result<Answer<Me>, ApiError> {
        self.json::<_, ()>(Method::GET, &["me"], &[], None).await
    }

    /// A request under `/v1/` whose success answer is JSON.
    async fn json<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, Option<&str>)],
        body: Option<&B>,
    ) -> Result<Answer<T>, ApiError> {
        let (url, status, bytes) = self.send(method, segments, query, body).await?;
        let unreadable = |source| ApiError::Unreadable {
            url: url.clone(),
            status,
            source,
        };
        let json: Value = serde_json::from_slice(&bytes).map_err(|e| unreadable(Some(e)))?;
        let view = T::deserialize(&json).map_err(|e| unreadable(Some(e)))?;
        Ok(Answer { json, view })
    }

    /// A DELETE under `/v1/` that answers 204.
    async fn no_content(&self, segments: &[&str]) -> Result<(), ApiError> {
        let (url, status, _) = self.send::<()>(Method::DELETE, segments, &[], None).await?;
        if status == StatusCode::NO_CONTENT {
            Ok(())
        } else {
            Err(ApiError::Unreadable {
                url,
                status,
                source: None,
            })
        }
    }

    /// Sends the request and reads the whole answer; an error status becomes
    /// [`ApiError::Status`]. Gives the URL (for messages), the status and the body.
    async fn send<B: Serialize>(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, Option<&str>)],
        body: Option<&B>,
    ) -> Result<(String, StatusCode, Vec<u8>), ApiError> {
        let mut path = vec!["v1"];
        path.extend_from_slice(segments);
        let url = self.base.endpoint(&path, query);
        let shown = url.to_string();
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(self.secret.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let failed = |source: reqwest::Error| {
            if source.is_timeout() {
                ApiError::Timeout {
                    url: shown.clone(),
                    secs: self.timeout_secs,
                }
            } else {
                ApiError::Unreachable {
                    url: shown.clone(),
                    source,
                }
            }
        };
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(failed)?.to_vec();
        if status.is_success() {
            return Ok((shown, status, bytes));
        }
        Err(status_error(status, &bytes))
    }
}

/// The error an error status stands for, with the service's code and message when the body is
/// its JSON error shape, and a message made of the status otherwise (a proxy's HTML page).
fn status_error(status: StatusCode, body: &[u8]) -> ApiError {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = body["error"].as_str().map(str::to_owned);
    let message = body["message"]
        .as_str()
        .or_else(|| body["error_description"].as_str())
        .map_or_else(
            || {
                format!(
                    "the key service answered {status} without an error message (is --url the \
                     key service?)"
                )
            },
            str::to_owned,
        );
    ApiError::Status {
        status,
        code,
        message,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(text: &str) -> ServiceUrl {
        ServiceUrl::parse(text).unwrap()
    }

    #[test]
    fn endpoints_keep_the_base_path_and_encode_ids_as_one_segment() {
        let url =
            base("http://keys.internal:8080/keygate/").endpoint(&["v1", "keys", "../me?x"], &[]);
        assert_eq!(
            url.as_str(),
            "http://keys.internal:8080/keygate/v1/keys/..%2Fme%3Fx"
        );
    }

    #[test]
    fn query_pairs_are_encoded_and_absent_ones_left_out() {
        let url = base("http://127.0.0.1:8080").endpoint(
            &["v1", "audit"],
            &[
                ("tenant", Some("a&b")),
                ("actor", None),
                ("since", Some("2026-12-01T00:00:00+01:00")),
            ],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8080/v1/audit?tenant=a%26b&since=2026-12-01T00%3A00%3A00%2B01%3A00"
        );
    }

    #[test]
    fn https_credentials_queries_and_other_schemes_are_refused() {
        for bad in [
            "https://keys.example.com",
            "ftp://keys.example.com",
            "http://admin:pw@keys.example.com",
            "http://keys.example.com/?a=b",
            "keys.example.com",
        ] {
            assert!(ServiceUrl::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn an_error_body_gives_its_code_and_message() {
        let error = status_error(
            StatusCode::NOT_FOUND,
            br#"{"error":"not_found","message":"no such key"}"#,
        );
        let ApiError::Status { code, message, .. } = error else {
            panic!("not a status error: {error:?}");
        };
        assert_eq!(code.as_deref(), Some("not_found"));
        assert_eq!(message, "no such key");
    }

    #[test]
    fn an_error_without_json_says_which_status_came_back() {
        let error = status_error(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        assert!(error.to_string().contains("502"), "{error}");
    }

    #[test]
    fn a_client_view_reads_client_id_and_client_secret() {
        let json = serde_json::json!({
            "client_id": "kgc_1", "name": "billing", "tenant": "acme",
            "permissions": ["orders:read"], "status": "active",
            "created_at": "2026-11-22T10:00:00Z", "expires_at": null, "revoked_at": null,
            "client_secret": "kgcs_x"
        });
        let client = Credential::deserialize(&json).unwrap();
        assert_eq!(client.id, "kgc_1");
        assert_eq!(client.secret.as_deref(), Some("kgcs_x"));
        assert!(client.roles.is_empty());
    }

    #[test]
    fn an_audit_event_id_may_be_a_number_or_a_string() {
        let page = serde_json::json!({"events": [
            {"id": 42, "at": "2026-11-22T10:00:00Z", "actor": "admin", "action": "key.create",
             "target_type": "key", "target_id": "key_1", "tenant": "acme", "source": null,
             "outcome": "success", "request_id": null},
            {"id": "43", "at": "2026-11-22T10:00:01Z", "actor": "admin", "action": "auth.failure",
             "target_type": null, "target_id": null, "tenant": null, "source": "127.0.0.1",
             "outcome": "denied", "request_id": "r1"}
        ], "next": null});
        let page = AuditPage::deserialize(&page).unwrap();
        let ids: Vec<&str> = page.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["42", "43"]);
    }

    #[test]
    fn an_expiry_sends_only_what_was_asked() {
        let default = serde_json::to_value(Expiry::default()).unwrap();
        assert_eq!(default, serde_json::json!({}));
        let never = serde_json::to_value(Expiry {
            expires_in_secs: None,
            never_expires: true,
        })
        .unwrap();
        assert_eq!(never, serde_json::json!({"never_expires": true}));
    }
}
