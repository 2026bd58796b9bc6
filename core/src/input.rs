//! The policy input document, OPA-Envoy compatible plus chaperone's own keys.

use crate::cache::{SecretHasher, TokenCache};
use crate::decision_cache::KeyBytes;
use crate::record::{mask_credentials, ACCESS_TOKEN_PARAMETER, TOKEN_MASK};
use crate::token::{Agent, Grant};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::cell::{Cell, OnceCell};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Header name and value pairs exactly as the host gave them: bytes, in order, repeats kept.
pub type HeaderPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The request as the host gave it: header pairs (pseudo-headers included) as raw bytes.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    pub headers: HeaderPairs,
    /// Unique id for this decision, made by the host adapter (the core has no randomness).
    pub decision_id: String,
    /// Host clock, nanoseconds since the Unix epoch.
    pub now_ns: u64,
    /// The connection's peers (`input.attributes.source`, `.destination`), as far as the
    /// host gave them: the plugin asks only when the policy reads them ([`PeerReads`]).
    pub source: Peer,
    pub destination: Peer,
    /// The request's body, read only when the policy reads it and the configuration allows
    /// (`limits.max_request_body_bytes`).
    pub body: Option<RequestBody>,
}

/// What was read of a request's body: at most `limits.max_request_body_bytes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestBody {
    pub bytes: Vec<u8>,
    /// The body went on beyond `bytes`.
    pub truncated: bool,
}

impl RequestBody {
    /// The body as the host gave it so far, cut to `limit` bytes.
    pub fn read(mut bytes: Vec<u8>, limit: usize) -> Self {
        let truncated = bytes.len() > limit;
        bytes.truncate(limit);
        Self { bytes, truncated }
    }

    /// `input.attributes.request.http.body`: the text read, less a character the cut split;
    /// none when the body is not UTF-8.
    fn text(&self) -> Option<&str> {
        match std::str::from_utf8(&self.bytes) {
            Ok(text) => Some(text),
            Err(error) if self.truncated && error.error_len().is_none() => {
                std::str::from_utf8(&self.bytes[..error.valid_up_to()]).ok()
            }
            Err(_) => None,
        }
    }

    /// `input.parsed_body`: a complete, non-empty body sent as JSON (`application/json`, or a
    /// type ending in `+json`, as its `content-type` says), parsed; `None` for any other.
    /// [`InvalidJson`] when it says JSON and is not one JSON document (two documents, deeper
    /// than the parser goes, a number out of range, not UTF-8...): refused, as OPA-Envoy
    /// refuses it, so that no rule meets a document an upstream parser might read otherwise.
    pub fn json(&self, content_type: Option<&[u8]>) -> Result<Option<PolicyValue>, InvalidJson> {
        let Some(media_type) = content_type.and_then(|value| std::str::from_utf8(value).ok())
        else {
            return Ok(None);
        };
        let media_type = media_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let json = media_type == "application/json" || media_type.ends_with("+json");
        if !json || self.truncated || self.bytes.is_empty() {
            return Ok(None);
        }
        std::str::from_utf8(&self.bytes)
            .ok()
            .and_then(|text| PolicyValue::from_json_str(text).ok())
            .map(Some)
            .ok_or(InvalidJson)
    }
}

/// A body its `content-type` says is JSON, which is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidJson;

/// One end of the connection, as OPA-Envoy's input has it (Envoy's `AttributeContext.Peer`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    pub address: Option<SocketAddress>,
    /// Who the end is by its TLS certificate, as Envoy's ext_authz names it: the first URI SAN
    /// (a SPIFFE id under Istio), else the first DNS SAN, else the subject. Only as trusted as
    /// the listener's certificate validation.
    pub principal: Option<String>,
}

impl Peer {
    /// `{"address": ..., "principal": ...}` with what is known; `None` when nothing is.
    fn value(&self) -> Option<PolicyValue> {
        let names = &*NAMES;
        let mut peer = BTreeMap::new();
        if let Some(address) = &self.address {
            peer.insert(names.address.clone(), address.value());
        }
        if let Some(principal) = &self.principal {
            peer.insert(names.principal.clone(), text(principal));
        }
        (!peer.is_empty()).then(|| peer.into())
    }
}

/// A peer's address, as OPA-Envoy's input has it: an IP address (IPv6 without brackets) and,
/// when known, a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketAddress {
    pub ip: std::net::IpAddr,
    pub port: Option<u16>,
}

impl SocketAddress {
    /// From a host's text: `ip:port` or `[ipv6]:port` (Envoy's `source.address`), or a bare
    /// IP (Kong's, whose port is a property of its own). `None` for anything else (a Unix
    /// socket's path): no address is better than a wrong one.
    pub fn parse(text: &str) -> Option<Self> {
        // An IPv4 client of a dual-stack listener comes as `::ffff:a.b.c.d`: given as the
        // IPv4 address it is, so that IPv4 networks contain it.
        if let Ok(socket) = text.parse::<std::net::SocketAddr>() {
            return Some(Self {
                ip: socket.ip().to_canonical(),
                port: Some(socket.port()),
            });
        }
        let ip = text.parse::<std::net::IpAddr>().ok()?.to_canonical();
        Some(Self { ip, port: None })
    }

    /// `{"socketAddress": {"address": ..., "portValue": ...}}`.
    fn value(&self) -> PolicyValue {
        let names = &*NAMES;
        let mut socket = BTreeMap::new();
        socket.insert(names.address.clone(), text(&self.ip.to_string()));
        if let Some(port) = self.port {
            socket.insert(names.portValue.clone(), PolicyValue::from(u64::from(port)));
        }
        object([(&names.socketAddress, socket.into())])
    }
}

/// Which of the connection's peers a policy reads, found at configure time from its
/// references to `input`: the host is asked only for those, as each is a host call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerReads {
    pub source: bool,
    pub destination: bool,
}

/// The request line, read from pseudo-headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    pub method: String,
    pub path: String,
    pub host: String,
    pub scheme: String,
    pub request_id: Option<String>,
}

impl RequestFacts {
    /// `input.parsed_body` of this request (see [`RequestBody::json`]).
    pub fn parsed_body(&self) -> Result<Option<PolicyValue>, InvalidJson> {
        match &self.body {
            Some(body) => body.json(self.header("content-type")),
            None => Ok(None),
        }
    }

    /// First value of a header, by exact (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }

    /// `None` when a pseudo-header is missing or not UTF-8: such a request cannot be judged.
    pub fn request_line(&self) -> Option<RequestLine> {
        let text = |name: &str| {
            self.header(name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned)
        };
        let host = text(":authority").or_else(|| text("host"))?;
        Some(RequestLine {
            method: text(":method")?,
            path: text(":path")?,
            host,
            scheme: text(":scheme").unwrap_or_else(|| "http".to_owned()),
            request_id: text("x-request-id"),
        })
    }
}

/// The policy's own value type: inputs are built in it directly, with no JSON in between.
pub type PolicyValue = regorus::Value;

/// Declares [`Names`]: every key of the input, as a policy value made once per VM, so that a
/// request's input shares its keys instead of allocating each of them again.
macro_rules! input_names {
    ($($name:ident),* $(,)?) => {
        // OPA-Envoy's `socketAddress` and `portValue` are camel case.
        #[allow(non_snake_case)]
        struct Names {
            $($name: PolicyValue,)*
        }

        impl Names {
            fn new() -> Self {
                Self { $($name: PolicyValue::from(stringify!($name)),)* }
            }
        }
    };
}

input_names!(
    attributes,
    source,
    destination,
    address,
    socketAddress,
    portValue,
    principal,
    request,
    http,
    method,
    path,
    host,
    scheme,
    headers,
    body,
    parsed_path,
    parsed_query,
    parsed_body,
    truncated_body,
    agent,
    id,
    issuer,
    owner,
    subject,
    on_behalf_of,
    delegation,
    task,
    purpose,
    task_context,
    registered,
    claims,
    grants,
    now_ns,
    sub,
    iss,
    client_id,
    jti,
    approver,
    reason,
    authorization_details,
    not_before_ns,
    expires_at_ns,
    remaining_seconds,
);

static NAMES: std::sync::LazyLock<Names> = std::sync::LazyLock::new(Names::new);

/// An object from keys of [`NAMES`].
fn object<const N: usize>(pairs: [(&PolicyValue, PolicyValue); N]) -> PolicyValue {
    pairs
        .into_iter()
        .map(|(key, value)| (key.clone(), value))
        .collect::<BTreeMap<_, _>>()
        .into()
}

fn text(value: &str) -> PolicyValue {
    PolicyValue::from(value)
}

fn optional(value: Option<&str>) -> PolicyValue {
    value.map_or(PolicyValue::Null, PolicyValue::from)
}

/// A document the policy reads and a remembered answer's key is made from: whole, or only at
/// the paths the policy reads.
pub trait InputDocument {
    fn whole(&self) -> PolicyValue;
    /// Adds to `key` the value at `path` (field names, outermost first), or that there is
    /// none ([`KeyBytes::found`]).
    fn feed_key(&self, path: &[PolicyValue], key: &mut KeyBytes);
}

impl InputDocument for PolicyValue {
    fn whole(&self) -> PolicyValue {
        self.clone()
    }

    fn feed_key(&self, path: &[PolicyValue], key: &mut KeyBytes) {
        key.found(path, lookup(self, path));
    }
}

fn lookup<'v>(value: &'v PolicyValue, path: &[PolicyValue]) -> Option<&'v PolicyValue> {
    path.iter().try_fold(value, |value, name| match value {
        PolicyValue::Object(fields) => fields.get(name),
        _ => None,
    })
}

/// One request's `input`, made from its parts only where it is read: whole for the policy,
/// or just the values a remembered answer's key covers, so that an answer served from memory
/// never pays for the headers, the query or the grants its policy does not read.
/// Credentials and chaperone's own headers never enter it; grants enter as their verified
/// claims.
pub struct RequestInput<'a> {
    pub line: &'a RequestLine,
    pub facts: &'a RequestFacts,
    /// Lower case.
    pub credential_headers: &'a [String],
    /// The agent's object ([`agent_input`], or remembered by [`AgentInputs`]).
    pub agent: AgentObject,
    pub grants: &'a [Grant],
    /// `input.parsed_body` ([`RequestFacts::parsed_body`], parsed once by the caller).
    pub parsed_body: Option<PolicyValue>,
}

/// The objects of `input` that [`RequestInput`] makes field by field (in the order of
/// [`LEVEL_FIELDS`], which they index).
#[derive(Debug, Clone, Copy)]
enum Level {
    Input,
    Attributes,
    Request,
    Http,
}

/// A field of one of those objects: a value made from the request, a string of the request
/// line, the path's segments, another such object, the request's headers (made as a value
/// for the policy, written from their pairs for a record) or the agent's object (written
/// from its JSON, where kept, for a record). Strings and segments are made into values only
/// where a value is needed: a key or a record writes them from the request.
enum Field<'r> {
    Value(PolicyValue),
    Text(&'r str),
    Segments,
    Object(Level),
    Headers,
    Agent,
}

/// The fields of each [`Level`] (indexed by it), in the order an object lists them: by name.
static LEVEL_FIELDS: std::sync::LazyLock<[Vec<PolicyValue>; 4]> = std::sync::LazyLock::new(|| {
    let n = &*NAMES;
    let fields = |names: &[&PolicyValue]| names.iter().map(|&name| name.clone()).collect();
    [
        fields(&[
            &n.agent,
            &n.attributes,
            &n.grants,
            &n.now_ns,
            &n.parsed_body,
            &n.parsed_path,
            &n.parsed_query,
            &n.truncated_body,
        ]),
        fields(&[&n.destination, &n.request, &n.source]),
        fields(&[&n.http]),
        fields(&[&n.body, &n.headers, &n.host, &n.method, &n.path, &n.scheme]),
    ]
});

fn level_fields(level: Level) -> &'static [PolicyValue] {
    &LEVEL_FIELDS[level as usize]
}

impl RequestInput<'_> {
    /// The one place the input's shape is written: every field of every level.
    fn field(&self, level: Level, name: &PolicyValue) -> Option<Field<'_>> {
        let name = name.as_string().ok()?;
        let value = match (level, &**name) {
            (Level::Input, "attributes") => return Some(Field::Object(Level::Attributes)),
            (Level::Attributes, "request") => return Some(Field::Object(Level::Request)),
            (Level::Attributes, "source") => self.facts.source.value()?,
            (Level::Attributes, "destination") => self.facts.destination.value()?,
            (Level::Request, "http") => return Some(Field::Object(Level::Http)),
            (Level::Input, "parsed_path") => return Some(Field::Segments),
            (Level::Input, "parsed_query") => parse_query(self.path_and_query().1)
                .into_iter()
                .map(|(key, values)| (PolicyValue::from(key), PolicyValue::from(values)))
                .collect::<BTreeMap<_, _>>()
                .into(),
            (Level::Input, "agent") => return Some(Field::Agent),
            (Level::Input, "grants") => self
                .grants
                .iter()
                .map(|grant| grant_input(grant, self.facts.now_ns))
                .collect::<Vec<_>>()
                .into(),
            (Level::Input, "now_ns") => PolicyValue::from(self.facts.now_ns),
            (Level::Input, "parsed_body") => self.parsed_body.clone()?,
            (Level::Input, "truncated_body") => {
                PolicyValue::from(self.facts.body.as_ref()?.truncated)
            }
            (Level::Http, "method") => return Some(Field::Text(&self.line.method)),
            (Level::Http, "path") => return Some(Field::Text(&self.line.path)),
            (Level::Http, "host") => return Some(Field::Text(&self.line.host)),
            (Level::Http, "scheme") => return Some(Field::Text(&self.line.scheme)),
            (Level::Http, "headers") => return Some(Field::Headers),
            (Level::Http, "body") => return Some(Field::Text(self.facts.body.as_ref()?.text()?)),
            _ => return None,
        };
        Some(Field::Value(value))
    }

    fn build(&self, level: Level) -> PolicyValue {
        level_fields(level)
            .iter()
            .filter_map(|name| Some((name.clone(), self.value(self.field(level, name)?))))
            .collect::<BTreeMap<_, _>>()
            .into()
    }

    /// A field made as the policy sees it.
    fn value(&self, field: Field) -> PolicyValue {
        match field {
            Field::Value(value) => value,
            Field::Text(value) => text(value),
            Field::Segments => self.segments(),
            Field::Object(inner) => self.build(inner),
            Field::Headers => self.headers(),
            Field::Agent => self.agent.value.clone(),
        }
    }

    fn segments(&self) -> PolicyValue {
        path_segments(self.path_and_query().0)
            .map(|segment| text(&segment))
            .collect::<Vec<_>>()
            .into()
    }

    fn headers(&self) -> PolicyValue {
        kept_headers(self.facts, self.credential_headers)
            .into_iter()
            .map(|(name, value)| (text(&name), text(&value)))
            .collect::<BTreeMap<_, _>>()
            .into()
    }

    /// `input` as a record keeps it: JSON written straight from the parts, in the order of
    /// the whole document's objects, so a record never makes the document for itself. The
    /// members at `erase` (paths of field names under `input`, at most [`MAX_ERASED_PATHS`])
    /// are left out, and the credentials in the request's strings masked. `None` when it
    /// cannot be written.
    pub fn logged(&self, erase: &[Vec<PolicyValue>]) -> Option<Logged> {
        if erase.len() > MAX_ERASED_PATHS {
            return None;
        }
        let redacting = Redacting::new(erase);
        let document = LevelJson {
            input: self,
            redacting: &redacting,
            level: Level::Input,
            depth: 0,
            // A bit for each path.
            pending: u64::MAX
                .checked_shr((MAX_ERASED_PATHS - erase.len()) as u32)
                .unwrap_or(0),
        };
        let text = serde_json::value::to_raw_value(&document).ok()?;
        Some(Logged {
            input: LoggedInput(text),
            erased: redacting.erased.get(),
            credentials_masked: redacting.credentials_masked.get(),
        })
    }

    fn path_and_query(&self) -> (&str, &str) {
        let path = self.line.path.as_str();
        path.split_once('?').unwrap_or((path, ""))
    }
}

impl InputDocument for RequestInput<'_> {
    fn whole(&self) -> PolicyValue {
        self.build(Level::Input)
    }

    /// Makes only what `path` leads to, and writes the request line's strings and the path's
    /// segments without making them into values (a remembered answer's key, every request).
    fn feed_key(&self, path: &[PolicyValue], key: &mut KeyBytes) {
        let mut level = Level::Input;
        for (depth, name) in path.iter().enumerate() {
            let inner = &path[depth + 1..];
            let field = match self.field(level, name) {
                Some(Field::Object(next)) => {
                    level = next;
                    continue;
                }
                Some(field) => field,
                None => return key.found(path, None),
            };
            return match field {
                Field::Text(value) if inner.is_empty() => key.string(value),
                Field::Segments if inner.is_empty() => {
                    let (request_path, _) = self.path_and_query();
                    // Counted without decoding: decoding never empties a segment.
                    key.array(raw_segments(request_path).count());
                    path_segments(request_path).for_each(|segment| key.string(&segment));
                }
                Field::Agent => key.found(path, lookup(&self.agent.value, inner)),
                field => key.found(path, lookup(&self.value(field), inner)),
            };
        }
        key.found(path, Some(&self.build(level)));
    }
}

/// `input.agent`: who is asking, as attribution left it (owner from the registry, the
/// transaction's task and purpose), with its verified claims.
pub fn agent_input(agent: &Agent) -> PolicyValue {
    let names = &*NAMES;
    let delegation: Vec<PolicyValue> = agent
        .delegation
        .iter()
        .map(|actor| {
            let mut fields = BTreeMap::from([(names.sub.clone(), text(&actor.sub))]);
            if let Some(iss) = &actor.iss {
                fields.insert(names.iss.clone(), text(iss));
            }
            if let Some(client_id) = &actor.client_id {
                fields.insert(names.client_id.clone(), text(client_id));
            }
            fields.into()
        })
        .collect();
    object([
        (&names.id, text(&agent.id)),
        (&names.issuer, text(&agent.issuer)),
        (&names.owner, optional(agent.owner.as_deref())),
        (&names.subject, text(&agent.subject)),
        (&names.on_behalf_of, optional(agent.on_behalf_of.as_deref())),
        (&names.delegation, delegation.into()),
        (&names.task, optional(agent.task.as_deref())),
        (&names.purpose, optional(agent.purpose.as_deref())),
        (
            &names.task_context,
            agent.task_context.clone().unwrap_or(PolicyValue::Null),
        ),
        (
            &names.registered,
            agent
                .registered
                .map_or(PolicyValue::Null, PolicyValue::from),
        ),
        // Converted once when the token was verified; shared, not copied, per request.
        (&names.claims, agent.claims.clone()),
    ])
}

/// An agent's `input.agent`: the object ([`agent_input`]), and the same as JSON for records
/// when one was asked for.
#[derive(Debug, Clone)]
pub struct AgentObject {
    pub value: PolicyValue,
    pub json: Option<AgentJson>,
}

/// An agent's object as a record writes it: its strings masked as the request's are (an
/// issuer may put a token in a claim), and whether one was.
#[derive(Debug, Clone)]
pub struct AgentJson {
    text: Arc<RawValue>,
    credentials_masked: bool,
}

impl AgentObject {
    fn json_of(value: &PolicyValue) -> Option<AgentJson> {
        let redacting = Redacting::new(&[]);
        let writer = ValueJson {
            value,
            redacting: &redacting,
            depth: 0,
            pending: 0,
            secret: false,
        };
        let text = serde_json::value::to_raw_value(&writer).ok()?;
        Some(AgentJson {
            text: Arc::from(text),
            credentials_masked: redacting.credentials_masked.get(),
        })
    }
}

/// Agents' objects ([`agent_input`]) remembered between requests, as agents come back with
/// the same token request after request, with their JSON once a record needed it. An entry
/// serves only an agent equal to the one it was made for, whatever changed in between
/// (another transaction, another registry), so it cannot go stale; a different agent
/// replaces it. Bounded like the token caches.
pub struct AgentInputs {
    known: TokenCache<KnownAgent>,
}

/// An agent [`AgentInputs`] remembers, with its object, and its JSON once asked for.
struct KnownAgent {
    agent: Agent,
    value: PolicyValue,
    json: OnceCell<Option<AgentJson>>,
}

impl KnownAgent {
    fn object(&self, for_record: bool) -> AgentObject {
        let json = for_record.then(|| {
            self.json
                .get_or_init(|| AgentObject::json_of(&self.value))
                .clone()
        });
        AgentObject {
            value: self.value.clone(),
            json: json.flatten(),
        }
    }
}

impl AgentInputs {
    /// A capacity of 0 makes every agent's object afresh.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            known: TokenCache::with_capacity(capacity),
        }
    }

    /// `agent`'s object (with its JSON, `for_record`), made once while the same agent keeps
    /// coming back.
    pub fn input_of(
        &mut self,
        agent: &Agent,
        hasher: &SecretHasher,
        for_record: bool,
    ) -> AgentObject {
        let key = hasher.key(agent.id.as_bytes());
        if let Some(known) = self
            .known
            .get(&key, 0)
            .filter(|known| known.agent == *agent)
        {
            return known.object(for_record);
        }
        let known = KnownAgent {
            agent: agent.clone(),
            value: agent_input(agent),
            json: OnceCell::new(),
        };
        let object = known.object(for_record);
        // Never expires: an entry is checked against the agent every time it serves.
        self.known.insert(key, "", known, u64::MAX);
        object
    }
}

/// `attributes.request.http.headers`, by name: names in lower case (hosts already send them
/// so, and only others are copied), pseudo-headers, credentials and chaperone's own headers
/// left out, repeated headers joined with a comma in the order they came, as Envoy presents
/// them to ext_authz.
fn kept_headers<'f>(
    facts: &'f RequestFacts,
    credential_headers: &[String],
) -> Vec<(Cow<'f, str>, Cow<'f, str>)> {
    let mut kept: Vec<(Cow<str>, &str)> = Vec::with_capacity(facts.headers.len());
    for (name, value) in &facts.headers {
        let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) else {
            continue;
        };
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        if name.starts_with(':')
            || credential_headers.iter().any(|c| *c == name)
            || crate::decision::is_identity_header(&name)
        {
            continue;
        }
        kept.push((name, value));
    }
    // Stable: the values of a repeated header stay in the order they came.
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    let mut headers = Vec::with_capacity(kept.len());
    let mut pairs = kept.into_iter().peekable();
    while let Some((name, value)) = pairs.next() {
        let mut joined = Cow::Borrowed(value);
        while let Some((_, next)) = pairs.next_if(|(other, _)| *other == name) {
            let joined = joined.to_mut();
            joined.push(',');
            joined.push_str(next);
        }
        headers.push((name, joined));
    }
    headers
}

/// Paths a record's input can have erased ([`RequestInput::logged`]): one bit each.
pub const MAX_ERASED_PATHS: usize = 64;

/// What [`RequestInput::logged`] wrote.
pub struct Logged {
    pub input: LoggedInput,
    /// A bit for each erase path that was there and left out (a path inside another one
    /// left out is not reached).
    pub erased: u64,
    /// Some string held a credential, masked in `input`.
    pub credentials_masked: bool,
}

/// The policy input as a record keeps it: JSON text.
#[derive(Debug, Clone)]
pub struct LoggedInput(Box<RawValue>);

impl LoggedInput {
    pub fn json(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for LoggedInput {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl Serialize for LoggedInput {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// What one [`RequestInput::logged`] leaves out: the members at its erase paths (and which
/// of them were met; writers carry `pending`, a bit for each path that leads through where
/// they are), and the credentials in the strings the request brought ([`mask_credentials`]).
struct Redacting<'e> {
    paths: &'e [Vec<PolicyValue>],
    erased: Cell<u64>,
    credentials_masked: Cell<bool>,
}

impl<'e> Redacting<'e> {
    /// Erasing the members at `paths`, nothing erased or masked yet.
    fn new(paths: &'e [Vec<PolicyValue>]) -> Self {
        Self {
            paths,
            erased: Cell::new(0),
            credentials_masked: Cell::new(false),
        }
    }

    fn mask<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let masked = mask_credentials(text);
        if matches!(masked, Cow::Owned(_)) {
            self.credentials_masked.set(true);
        }
        masked
    }

    /// A string that is a credential as a whole: [`TOKEN_MASK`] (an empty one stays empty).
    fn mask_whole<'t>(&self, text: &'t str) -> &'t str {
        if text.is_empty() {
            return text;
        }
        self.credentials_masked.set(true);
        TOKEN_MASK
    }

    /// The `pending` paths that go on through member `name`, `depth` names down; `None`
    /// when one of them ends there: the member is left out and those paths are erased.
    fn enter(&self, pending: u64, depth: usize, name: &str) -> Option<u64> {
        let (mut through, mut ending) = (0, 0);
        let mut rest = pending;
        while rest != 0 {
            let bit = rest & rest.wrapping_neg();
            rest &= rest - 1;
            let path = &self.paths[bit.trailing_zeros() as usize];
            let named = path.get(depth).and_then(|token| token.as_string().ok());
            if named.is_some_and(|token| **token == *name) {
                if path.len() == depth + 1 {
                    ending |= bit;
                } else {
                    through |= bit;
                }
            }
        }
        if ending == 0 {
            return Some(through);
        }
        self.erased.set(self.erased.get() | ending);
        None
    }
}

/// Writes one of [`RequestInput`]'s objects for a record.
struct LevelJson<'w, 'a> {
    input: &'w RequestInput<'a>,
    redacting: &'w Redacting<'w>,
    level: Level,
    depth: usize,
    pending: u64,
}

impl Serialize for LevelJson<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for name in level_fields(self.level) {
            let Some(field) = self.input.field(self.level, name) else {
                continue;
            };
            let Ok(key) = name.as_string() else {
                continue;
            };
            let Some(pending) = self.redacting.enter(self.pending, self.depth, key) else {
                continue;
            };
            let depth = self.depth + 1;
            match field {
                Field::Object(level) => map.serialize_entry(
                    &**key,
                    &LevelJson {
                        level,
                        depth,
                        pending,
                        ..*self
                    },
                )?,
                // A string has no members for an erase path to end at.
                Field::Text(value) => map.serialize_entry(&**key, &self.redacting.mask(value))?,
                Field::Value(_) | Field::Segments => {
                    let value = self.input.value(field);
                    map.serialize_entry(&**key, &self.value_json(&value, depth, pending))?
                }
                Field::Agent => match &self.input.agent.json {
                    Some(json) if pending == 0 => {
                        if json.credentials_masked {
                            self.redacting.credentials_masked.set(true);
                        }
                        map.serialize_entry(&**key, &*json.text)?
                    }
                    _ => map.serialize_entry(
                        &**key,
                        &self.value_json(&self.input.agent.value, depth, pending),
                    )?,
                },
                Field::Headers => {
                    let headers = kept_headers(self.input.facts, self.input.credential_headers);
                    map.serialize_entry(
                        &**key,
                        &HeadersJson {
                            headers: &headers,
                            redacting: self.redacting,
                            depth,
                            pending,
                        },
                    )?
                }
            }
        }
        map.end()
    }
}

impl<'w> LevelJson<'w, '_> {
    fn value_json<'v>(&self, value: &'v PolicyValue, depth: usize, pending: u64) -> ValueJson<'v>
    where
        'w: 'v,
    {
        ValueJson {
            value,
            redacting: self.redacting,
            depth,
            pending,
            secret: false,
        }
    }
}

/// Writes a value of the input for a record, leaving out the members erase paths end at.
struct ValueJson<'w> {
    value: &'w PolicyValue,
    redacting: &'w Redacting<'w>,
    depth: usize,
    pending: u64,
    /// Inside an `access_token` member (`input.parsed_query.access_token`): every string is
    /// a bearer token.
    secret: bool,
}

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let fields = match self.value {
            PolicyValue::Object(fields) => fields,
            PolicyValue::String(text) if self.secret => {
                return serializer.serialize_str(self.redacting.mask_whole(text))
            }
            PolicyValue::String(text) => {
                return serializer.serialize_str(&self.redacting.mask(text))
            }
            // Erase paths name members, never items: an array's items are written whole.
            PolicyValue::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for value in items.iter() {
                    seq.serialize_element(&ValueJson {
                        value,
                        pending: 0,
                        ..*self
                    })?;
                }
                return seq.end();
            }
            value => return value.serialize(serializer),
        };
        let mut map = serializer.serialize_map(None)?;
        for (name, value) in fields.iter() {
            let Ok(key) = name.as_string() else {
                map.serialize_entry(
                    name,
                    &ValueJson {
                        value,
                        pending: 0,
                        ..*self
                    },
                )?;
                continue;
            };
            if let Some(pending) = self.redacting.enter(self.pending, self.depth, key) {
                let value = ValueJson {
                    value,
                    depth: self.depth + 1,
                    pending,
                    secret: self.secret || **key == *ACCESS_TOKEN_PARAMETER,
                    ..*self
                };
                // A query's parameter names are the request's too (`?<token>`).
                map.serialize_entry(&self.redacting.mask(key), &value)?;
            }
        }
        map.end()
    }
}

/// Writes the kept headers (by name) for a record, leaving out those erase paths end at.
struct HeadersJson<'w, 'f> {
    headers: &'w [(Cow<'f, str>, Cow<'f, str>)],
    redacting: &'w Redacting<'w>,
    depth: usize,
    pending: u64,
}

impl Serialize for HeadersJson<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.headers.len()))?;
        for (name, value) in self.headers {
            if self
                .redacting
                .enter(self.pending, self.depth, name)
                .is_some()
            {
                map.serialize_entry(&**name, &self.redacting.mask(value))?;
            }
        }
        map.end()
    }
}

/// A grant as the policy sees it, with the whole seconds it has left at `now_ns`.
fn grant_input(grant: &Grant, now_ns: u64) -> PolicyValue {
    let names = &*NAMES;
    object([
        (&names.jti, text(&grant.jti)),
        (&names.issuer, text(&grant.issuer)),
        (&names.approver, text(&grant.approver)),
        (&names.task, optional(grant.task.as_deref())),
        (&names.reason, optional(grant.reason.as_deref())),
        (
            &names.authorization_details,
            grant.authorization_details.clone(),
        ),
        (&names.not_before_ns, PolicyValue::from(grant.not_before_ns)),
        (&names.expires_at_ns, PolicyValue::from(grant.expires_at_ns)),
        (
            &names.remaining_seconds,
            PolicyValue::from(remaining_seconds(grant, now_ns)),
        ),
    ])
}

pub fn remaining_seconds(grant: &Grant, now_ns: u64) -> u64 {
    grant.expires_at_ns.saturating_sub(now_ns) / 1_000_000_000
}

/// `input.parsed_path`: the path's segments, percent-decoded (borrowed from `path` where
/// none needs it), empty segments dropped (`/a//b/` gives `["a","b"]`). The path is never
/// run through a URL parser: `//evil/x` stays a path.
fn path_segments(path: &str) -> impl Iterator<Item = Cow<'_, str>> {
    raw_segments(path).map(|s| percent_decode(s, false))
}

/// The path's segments as written, empty ones dropped.
fn raw_segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

pub fn parse_query(query: &str) -> Map<String, Value> {
    let mut parsed = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let entry = parsed
            .entry(percent_decode(key, true).into_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(values) = entry {
            values.push(Value::String(percent_decode(value, true).into_owned()));
        }
    }
    parsed
}

/// Decodes `%XX` (and `+` in queries); invalid escapes and non-UTF-8 results stay as written.
pub(crate) fn percent_decode(text: &str, plus_is_space: bool) -> Cow<'_, str> {
    match percent_decoded_bytes(text, plus_is_space) {
        None => Cow::Borrowed(text),
        Some(bytes) => String::from_utf8(bytes).map_or(Cow::Borrowed(text), Cow::Owned),
    }
}

/// Decodes `%XX` as [`percent_decode`] does, but bytes that are not UTF-8 become U+FFFD
/// rather than undoing the whole decoding: what a lenient upstream would read.
pub(crate) fn percent_decode_lossy(text: &str) -> Cow<'_, str> {
    match percent_decoded_bytes(text, false) {
        None => Cow::Borrowed(text),
        Some(bytes) => Cow::Owned(String::from_utf8_lossy(&bytes).into_owned()),
    }
}

/// `text`'s bytes with `%XX` (and `+`) decoded; `None` when it has nothing to decode.
fn percent_decoded_bytes(text: &str, plus_is_space: bool) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let decodes = |byte: &u8| *byte == b'%' || (plus_is_space && *byte == b'+');
    if !bytes.iter().any(decodes) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let hex = |b: u8| (b as char).to_digit(16);
        match byte {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(byte),
            },
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(byte),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_split_without_url_parsing() {
        let segments = |path| path_segments(path).collect::<Vec<_>>();
        assert_eq!(segments("/tickets/42"), ["tickets", "42"]);
        assert_eq!(segments("//evil/admin"), ["evil", "admin"]);
        assert_eq!(segments("/a%20b/c%2Fd"), ["a b", "c/d"]);
        assert_eq!(segments("/bad%zz/%"), ["bad%zz", "%"]);
        assert!(segments("/").is_empty());
        assert!(matches!(
            path_segments("/plain").next(),
            Some(Cow::Borrowed("plain"))
        ));
    }

    #[test]
    fn peers_are_read_as_envoy_and_kong_give_them() {
        let parsed = |text| SocketAddress::parse(text).map(|a| (a.ip.to_string(), a.port));
        let some = |ip: &str, port| Some((ip.to_owned(), port));
        assert_eq!(parsed("127.0.0.1:80"), some("127.0.0.1", Some(80)));
        assert_eq!(parsed("[::1]:8443"), some("::1", Some(8443)));
        assert_eq!(parsed("192.0.2.9"), some("192.0.2.9", None));
        assert_eq!(parsed("2001:db8::1"), some("2001:db8::1", None));
        assert_eq!(parsed("[::ffff:10.1.2.3]:80"), some("10.1.2.3", Some(80)));
        for junk in [
            "",
            "@gateway.sock",
            "host:80",
            "1.2.3.4:99999",
            "[::1]",
            "1.2.3.4 ",
        ] {
            assert_eq!(parsed(junk), None, "{junk:?}");
        }
        let no_port = Peer {
            address: SocketAddress::parse("192.0.2.9"),
            principal: None,
        };
        assert_eq!(
            no_port.value(),
            Some(PolicyValue::from(
                json!({"address": {"socketAddress": {"address": "192.0.2.9"}}})
            ))
        );
        let principal_only = Peer {
            address: None,
            principal: Some("spiffe://example.org/ns/agents/sa/bot".to_owned()),
        };
        assert_eq!(
            principal_only.value(),
            Some(PolicyValue::from(
                json!({"principal": "spiffe://example.org/ns/agents/sa/bot"})
            ))
        );
        assert_eq!(Peer::default().value(), None);
    }

    #[test]
    fn a_body_is_text_when_utf8_and_parsed_when_json_and_whole() {
        let json = Some(b"application/json".as_slice());
        let body = |text: &[u8], limit| RequestBody::read(text.to_vec(), limit);
        let whole = body(br#"{"method": "tools/call"}"#, 100);
        assert_eq!(whole.text(), Some(r#"{"method": "tools/call"}"#));
        assert_eq!(
            whole.json(json).ok().flatten(),
            Some(PolicyValue::from(json!({"method": "tools/call"})))
        );
        for content_type in [
            "Application/JSON; charset=utf-8",
            "application/vnd.api+json",
            " application/json ",
        ] {
            assert!(
                whole
                    .json(Some(content_type.as_bytes()))
                    .ok()
                    .flatten()
                    .is_some(),
                "{content_type}"
            );
        }
        for content_type in [None, Some("text/plain"), Some("application/jsonx")] {
            assert_eq!(
                whole.json(content_type.map(str::as_bytes)).ok().flatten(),
                None,
                "{content_type:?}"
            );
        }
        // Cut at the limit: the text up to the cut, never parsed (it would not be the
        // document the upstream gets).
        let cut = body(br#"{"method": "tools/call"}"#, 10);
        assert_eq!((cut.text(), cut.truncated), (Some(r#"{"method":"#), true));
        assert_eq!(cut.json(json).ok().flatten(), None);
        // A cut through a character leaves it out; bytes that are no UTF-8 give no text.
        assert_eq!(body("caf\u{e9}".as_bytes(), 4).text(), Some("caf"));
        assert_eq!(body(b"caf\xff", 100).text(), None);
        assert_eq!(body(b"{not json", 100).json(json).ok().flatten(), None);
        // Declared JSON that is not one document is refused; anything else is the policy's.
        for text in [&b"{not json"[..], b"{}{}", b"{\"n\": 1e400}", b"caf\xff"] {
            assert!(body(text, 100).json(json).is_err(), "{text:?}");
        }
        for (text, content_type) in [
            (&b"{not json"[..], None),
            (b"", json),
            (b"{\"a\": 12345}", json),
        ] {
            assert!(
                body(text, 8).json(content_type).is_ok(),
                "{text:?}: cut, empty or not JSON"
            );
        }
        // Deeper than the JSON parser goes: no value, no panic.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            body(deep.as_bytes(), 1 << 20).json(json).ok().flatten(),
            None
        );
    }

    #[test]
    fn headers_enter_in_lower_case_with_repeats_joined_in_order() {
        let pair = |name: &str, value: &[u8]| (name.as_bytes().to_vec(), value.to_vec());
        let facts = RequestFacts {
            headers: vec![
                pair(":path", b"/x"),
                pair("Accept", b"text/plain"),
                pair("x-tenant", b"a"),
                pair("authorization", b"Bearer secret"),
                pair("X-Chaperone-Agent-Id", b"spoofed"),
                pair("zeta", b"1"),
                pair("X-Tenant", b"b"),
                pair("bad", b"\xff"),
                pair("x-tenant", b"c"),
            ],
            ..RequestFacts::default()
        };
        let headers = kept_headers(&facts, &["authorization".to_owned()]);
        assert_eq!(
            headers,
            [
                ("accept", "text/plain"),
                ("x-tenant", "a,b,c"),
                ("zeta", "1")
            ]
            .map(|(name, value)| (Cow::from(name), Cow::from(value)))
        );
    }

    /// A request with a query, a credential header and one grant.
    fn with_input<T>(check: impl FnOnce(&RequestInput) -> T) -> T {
        let pair = |name: &str, value: &str| (name.as_bytes().to_vec(), value.as_bytes().to_vec());
        let facts = RequestFacts {
            headers: vec![
                pair(":method", "POST"),
                pair(":path", "/tickets/42/a%2Fb//comments?draft=1&tag=a&tag=b"),
                pair(":authority", "api.example"),
                pair(":scheme", "https"),
                pair("authorization", "Bearer secret"),
                pair("x-tenant", "acme"),
                pair("cookie", "session=s3cret"),
                pair("content-type", "application/json; charset=utf-8"),
            ],
            decision_id: "d".to_owned(),
            now_ns: 1_700_000_000_000_000_000,
            source: Peer {
                address: SocketAddress::parse("10.1.2.3:50312"),
                principal: Some("spiffe://example.org/ns/agents/sa/support-bot".to_owned()),
            },
            destination: Peer {
                address: SocketAddress::parse("[2001:db8::7]:443"),
                principal: None,
            },
            body: Some(RequestBody {
                bytes: br#"{"method": "tools/call", "params": {"name": "search", "arguments": {"q": "x"}}}"#
                    .to_vec(),
                truncated: false,
            }),
        };
        let grant = Grant {
            jti: "g1".to_owned(),
            issuer: "https://grants.example".to_owned(),
            agent: "support-bot".to_owned(),
            approver: "erin@example.com".to_owned(),
            task: None,
            reason: Some("incident".to_owned()),
            authorization_details: PolicyValue::from(json!([{"type": "agent_http"}])),
            not_before_ns: 1_699_999_990_000_000_000,
            expires_at_ns: 1_700_000_060_000_000_000,
        };
        let Some(line) = facts.request_line() else {
            panic!("the request has its pseudo-headers");
        };
        let input = RequestInput {
            line: &line,
            facts: &facts,
            credential_headers: &["authorization".to_owned()],
            agent: AgentObject {
                value: agent_input(&agent("support-bot", Some("alice@example.com"))),
                json: None,
            },
            grants: std::slice::from_ref(&grant),
            parsed_body: facts.parsed_body().unwrap_or_default(),
        };
        check(&input)
    }

    #[test]
    fn the_input_is_opa_envoys_with_chaperones_keys() {
        let whole = with_input(|input| input.whole());
        let agent = agent_input(&agent("support-bot", Some("alice@example.com")));
        let expected = json!({
            "attributes": {
                "request": {"http": {
                    "method": "POST",
                    "path": "/tickets/42/a%2Fb//comments?draft=1&tag=a&tag=b",
                    "host": "api.example",
                    "scheme": "https",
                    "headers": {
                        "content-type": "application/json; charset=utf-8",
                        "cookie": "session=s3cret",
                        "x-tenant": "acme",
                    },
                    "body": r#"{"method": "tools/call", "params": {"name": "search", "arguments": {"q": "x"}}}"#,
                }},
                "source": {
                    "address": {"socketAddress": {"address": "10.1.2.3", "portValue": 50312}},
                    "principal": "spiffe://example.org/ns/agents/sa/support-bot",
                },
                "destination": {"address": {"socketAddress": {"address": "2001:db8::7", "portValue": 443}}},
            },
            "parsed_path": ["tickets", "42", "a/b", "comments"],
            "parsed_query": {"draft": ["1"], "tag": ["a", "b"]},
            "parsed_body": {"method": "tools/call", "params": {"name": "search", "arguments": {"q": "x"}}},
            "truncated_body": false,
            "grants": [{
                "jti": "g1",
                "issuer": "https://grants.example",
                "approver": "erin@example.com",
                "task": null,
                "reason": "incident",
                "authorization_details": [{"type": "agent_http"}],
                "not_before_ns": 1_699_999_990_000_000_000_u64,
                "expires_at_ns": 1_700_000_060_000_000_000_u64,
                "remaining_seconds": 60,
            }],
            "now_ns": 1_700_000_000_000_000_000_u64,
        });
        let mut expected = PolicyValue::from(expected);
        if let Ok(fields) = expected.as_object_mut() {
            fields.insert(PolicyValue::from("agent"), agent);
        }
        assert_eq!(whole, expected);
    }

    /// A remembered answer's key reads the input at paths, made only there or written from
    /// the request: at every path it must get the bytes of what the whole input holds, and
    /// the mark of nothing where it holds nothing.
    #[test]
    fn every_path_finds_in_the_parts_what_the_whole_input_holds() {
        fn paths_of(value: &PolicyValue, path: Vec<PolicyValue>, out: &mut Vec<Vec<PolicyValue>>) {
            if let PolicyValue::Object(fields) = value {
                for (name, inner) in fields.iter() {
                    let mut longer = path.clone();
                    longer.push(name.clone());
                    paths_of(inner, longer, out);
                }
            }
            out.push(path);
        }
        with_input(|input| {
            let whole = input.whole();
            let mut paths = Vec::new();
            paths_of(&whole, Vec::new(), &mut paths);
            assert!(paths.len() > 25, "{} paths", paths.len());
            let names = |names: &[&str]| names.iter().map(|&n| PolicyValue::from(n)).collect();
            for absent in [
                &["nope"][..],
                &["attributes", "nope"],
                &["attributes", "request", "http", "nope"],
                &["attributes", "request", "http", "method", "more"],
                &["attributes", "request", "http", "headers", "authorization"],
                &["parsed_path", "0"],
                &["agent", "nope"],
                &["now_ns", "x"],
            ] {
                paths.push(names(absent));
            }
            paths.push(vec![PolicyValue::from(1)]);
            let absent = {
                let mut key = KeyBytes::default();
                key.found(&[], None);
                key
            };
            let mut found = 0;
            for path in paths {
                let (mut from_parts, mut from_whole) = (KeyBytes::default(), KeyBytes::default());
                input.feed_key(&path, &mut from_parts);
                whole.feed_key(&path, &mut from_whole);
                assert_eq!(from_parts, from_whole, "{path:?}");
                found += usize::from(from_parts != absent);
            }
            assert!(found > 25, "{found} paths found");
        });
    }

    /// A record's input is written from the parts: it must be, to the byte, the whole input
    /// as serialised, less the members the erase paths name, and report those it found.
    #[test]
    fn a_records_input_is_the_whole_input_serialised_less_what_is_erased() {
        /// Removes the member at `path` (outermost paths first, so a path inside one already
        /// removed is not found); true if it was there.
        fn remove(value: &mut PolicyValue, path: &[&str]) -> bool {
            let Some((last, parents)) = path.split_last() else {
                return false;
            };
            let mut current = value;
            for name in parents {
                match current.as_object_mut() {
                    Ok(fields) => match fields.get_mut(&PolicyValue::from(*name)) {
                        Some(inner) => current = inner,
                        None => return false,
                    },
                    Err(_) => return false,
                }
            }
            current
                .as_object_mut()
                .is_ok_and(|fields| fields.remove(&PolicyValue::from(*last)).is_some())
        }
        let headers = ["attributes", "request", "http", "headers"];
        let under = |prefix: &[&'static str], name: &'static str| {
            let mut path = prefix.to_vec();
            path.push(name);
            path
        };
        let cases: Vec<Vec<Vec<&str>>> = vec![
            vec![],
            vec![
                under(&headers, "cookie"),
                under(&headers, "proxy-authorization"),
            ],
            vec![
                vec!["agent", "claims", "sub"],
                vec!["agent", "claims", "absent"],
                vec!["agent", "owner"],
            ],
            // Through an array (not a member), a string, and an absent level.
            vec![
                vec!["grants", "0"],
                vec!["parsed_path", "tickets"],
                vec!["attributes", "request", "http", "method", "x"],
                vec!["nope", "x"],
            ],
            // A whole level; a path inside another one erased; a header absent.
            vec![
                under(&headers, "x-tenant"),
                vec!["attributes", "request"],
                under(&headers, "accept"),
                vec!["now_ns"],
                vec!["parsed_query", "tag"],
            ],
        ];
        with_input(|made| {
            // The agent's object written from its value, and from its JSON kept for records.
            let kept = RequestInput {
                agent: AgentObject {
                    value: made.agent.value.clone(),
                    json: AgentObject::json_of(&made.agent.value),
                },
                parsed_body: made.parsed_body.clone(),
                ..*made
            };
            assert!(kept.agent.json.is_some());
            for (input, paths) in [made, &kept]
                .into_iter()
                .flat_map(|input| cases.iter().map(move |paths| (input, paths)))
            {
                let erase: Vec<Vec<PolicyValue>> = paths
                    .iter()
                    .map(|path| path.iter().map(|&name| PolicyValue::from(name)).collect())
                    .collect();
                let Some(Logged {
                    input: logged,
                    erased,
                    credentials_masked: false,
                }) = input.logged(&erase)
                else {
                    panic!("{paths:?}: the input is written, with nothing to mask");
                };
                let mut expected = input.whole();
                let mut by_length: Vec<usize> = (0..paths.len()).collect();
                by_length.sort_by_key(|&i| paths[i].len());
                let mut expected_erased = 0u64;
                for i in by_length {
                    if remove(&mut expected, &paths[i]) {
                        expected_erased |= 1 << i;
                    }
                }
                let Ok(expected_text) = serde_json::to_string(&expected) else {
                    panic!("the whole input serialises");
                };
                assert_eq!(logged.json(), expected_text, "{paths:?}");
                assert_eq!(erased, expected_erased, "{paths:?}");
            }
            let input = made;
            let too_many = vec![vec![PolicyValue::from("now_ns")]; MAX_ERASED_PATHS + 1];
            assert!(input.logged(&too_many).is_none());
            let all = vec![vec![PolicyValue::from("now_ns")]; MAX_ERASED_PATHS];
            let Some(Logged {
                input: logged,
                erased,
                ..
            }) = input.logged(&all)
            else {
                panic!("{MAX_ERASED_PATHS} paths are written");
            };
            assert!(!logged.json().contains("now_ns"));
            assert_eq!(erased, u64::MAX);
        });
    }

    #[test]
    fn the_levels_list_their_fields_by_name() {
        for level in [Level::Input, Level::Attributes, Level::Request, Level::Http] {
            let names: Vec<&str> = level_fields(level)
                .iter()
                .filter_map(|name| name.as_string().ok().map(|name| &**name))
                .collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(names, sorted, "{level:?}");
        }
    }

    fn agent(id: &str, owner: Option<&str>) -> Agent {
        Agent {
            id: id.to_owned(),
            issuer: "https://idp.example".to_owned(),
            owner: owner.map(str::to_owned),
            kid: None,
            jti: None,
            subject: id.to_owned(),
            on_behalf_of: None,
            delegation: Vec::new(),
            task: None,
            purpose: Some("support".to_owned()),
            task_context: None,
            registered: Some(true),
            claims: PolicyValue::from(json!({"sub": id})),
        }
    }

    /// Found by review: the agent's JSON kept for records wrote its claims unmasked.
    #[test]
    fn a_token_in_an_agents_claims_is_masked_in_its_json() {
        let jws = format!(
            "{}.{}.c2ln",
            crate::encoding::base64url_encode(br#"{"alg":"ES256"}"#),
            crate::encoding::base64url_encode(br#"{"sub":"x"}"#)
        );
        let mut bot = agent("support-bot", None);
        bot.claims = PolicyValue::from(json!({"sub": "support-bot", "hint": jws}));
        let Some(json) = AgentObject::json_of(&agent_input(&bot)) else {
            panic!("the object serialises");
        };
        assert!(json.credentials_masked);
        assert!(
            json.text.get().contains(r#""hint":"[REDACTED-JWT]""#),
            "{}",
            json.text
        );
        let plain = AgentObject::json_of(&agent_input(&agent("support-bot", None)));
        assert!(plain.is_some_and(|json| !json.credentials_masked));
    }

    #[test]
    fn a_returning_agent_gets_its_object_again_and_a_changed_one_a_new_one() {
        let same_object = |a: &PolicyValue, b: &PolicyValue| match (a, b) {
            (PolicyValue::Object(a), PolicyValue::Object(b)) => regorus::Rc::ptr_eq(a, b),
            _ => false,
        };
        let hasher = SecretHasher::new([3; 16]);
        let mut inputs = AgentInputs::with_capacity(4);
        let bot = agent("support-bot", Some("alice@example.com"));
        let first = inputs.input_of(&bot, &hasher, false);
        assert_eq!(first.value, agent_input(&bot));
        assert!(first.json.is_none(), "no JSON unless a record asks");
        let again = inputs.input_of(&bot.clone(), &hasher, true);
        assert!(same_object(&first.value, &again.value));
        let json = |object: &AgentObject| match &object.json {
            Some(json) => Arc::clone(&json.text),
            None => panic!("a record asked for the JSON"),
        };
        let Ok(expected) = serde_json::to_string(&first.value) else {
            panic!("the object serialises");
        };
        assert_eq!(json(&again).get(), expected);
        let third = inputs.input_of(&bot, &hasher, true);
        assert!(Arc::ptr_eq(&json(&again), &json(&third)), "made once");

        // The registry gave the same agent another owner: never the remembered object.
        let moved = agent("support-bot", Some("bob@example.com"));
        let after = inputs.input_of(&moved, &hasher, true);
        assert_eq!(after.value, agent_input(&moved));
        assert_eq!(after.value["owner"], PolicyValue::from("bob@example.com"));
        assert!(json(&after).get().contains("bob@example.com"));
        let mut tasked = moved.clone();
        tasked.task = Some("TKT-1".to_owned());
        assert_eq!(
            inputs.input_of(&tasked, &hasher, false).value["task"],
            PolicyValue::from("TKT-1")
        );

        // Others come and go within the bound; with none, every object is made afresh.
        for n in 0..10 {
            let other = agent(&format!("agent-{n}"), None);
            assert_eq!(
                inputs.input_of(&other, &hasher, false).value,
                agent_input(&other)
            );
        }
        let mut none = AgentInputs::with_capacity(0);
        let a = none.input_of(&bot, &hasher, true);
        assert!(!same_object(
            &a.value,
            &none.input_of(&bot, &hasher, true).value
        ));
        assert_eq!(a.value, agent_input(&bot));
        assert_eq!(json(&a).get(), expected);
    }

    #[test]
    fn queries_keep_every_value() {
        let q = parse_query("a=1&b=x+y&a=2&flag&c=%C3%A9");
        assert_eq!(
            Value::Object(q),
            json!({"a": ["1", "2"], "b": ["x y"], "flag": [""], "c": ["é"]})
        );
    }
}
