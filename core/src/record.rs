//! The decision record: one attributed JSON object per request. OPA decision-log names where
//! the concept is the same. It never holds a token.

use crate::attribution::DroppedGrant;
use crate::cache::SecretHasher;
use crate::identity::Actor;
use crate::revocation::Revoked;
use crate::token::Agent;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DecisionRecord {
    pub decision_id: String,
    /// Per-VM sequence number, set by the host adapter so consumers can detect gaps.
    pub seq: u64,
    pub timestamp: String,
    /// `decision_log.labels`, plus `instance` (the VM, set by the host adapter): which
    /// sequence `seq` belongs to.
    pub labels: BTreeMap<String, String>,
    /// The decision rule, slash form (empty when no policy was loaded).
    pub path: String,
    pub bundles: BTreeMap<String, BundleInfo>,
    /// The policy input, with `decision_log.erase` applied (absent when the policy did not
    /// run or `decision_log.input` is off). Replay re-evaluates it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<crate::input::LoggedInput>,
    /// JSON Pointers erased from the record (OPA's `erased`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub erased: Vec<String>,
    /// What was decided. In dry-run a denial is recorded here and the request went upstream.
    pub result: RecordResult,
    pub reason: String,
    pub rule: Option<String>,
    /// Why the policy gave no usable answer (`policy_error`: the evaluation's error;
    /// `policy_result_invalid`: what is wrong with the result). OPA's decision logs have
    /// `error` too; the response never carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordError>,
    /// The decision was not enforced (dry-run): `result` is what would have happened.
    pub dry_run: bool,
    pub agent: Option<RecordAgent>,
    /// Set when a revocation list denied the request: which list, which value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revoked>,
    /// The grants that applied to the request; `used` when the policy said it relied on one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<RecordGrant>,
    /// Presented grants that did not apply, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grants_dropped: Vec<DroppedGrant>,
    /// Notable facts that did not change the outcome, e.g. `unregistered_agent` when the
    /// registry lets unregistered agents through.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    pub request: RecordRequest,
    pub metrics: RecordMetrics,
}

/// A grant in a record: which, approved by whom, how long it had left, whether it was used.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecordGrant {
    pub jti: String,
    pub approver: String,
    pub remaining_seconds: u64,
    pub used: bool,
}

/// Time spent, OPA-style names, from the caller's start (in the plugin: once the request's
/// headers are in): verifying and attributing the token (the request line read first),
/// evaluating the policy (or finding its remembered answer), and the total, until the
/// decision was applied (in the plugin: identity headers and filter state set, or the local
/// reply sent), in nanoseconds of the host clock.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct RecordMetrics {
    pub timer_token_ns: u64,
    pub timer_rego_query_eval_ns: u64,
    pub timer_total_ns: u64,
}

impl RecordMetrics {
    /// Sets the total: from `started` (as given to [`crate::decide_timed`]) to `now`.
    pub fn finish(&mut self, started: u64, now: u64) {
        self.timer_total_ns = now.saturating_sub(started);
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecordError {
    pub message: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BundleInfo {
    pub revision: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecordResult {
    pub allowed: bool,
    pub http_status: u16,
}

/// Who the request is attributed to: the verified claims that identify, never the token.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecordAgent {
    pub id: String,
    pub issuer: String,
    pub owner: Option<String>,
    pub subject: String,
    pub on_behalf_of: Option<String>,
    /// Actors of the token's `act` claims, current actor first.
    pub delegation: Vec<Actor>,
    pub task: Option<String>,
    pub purpose: Option<String>,
    /// `None` without a registry.
    pub registered: Option<bool>,
    pub kid: Option<String>,
    pub jti: Option<String>,
}

impl RecordAgent {
    /// The strings the agent's tokens gave it (the issuer and key id are configured).
    fn strings(&mut self) -> impl Iterator<Item = &mut String> {
        let RecordAgent {
            id,
            owner,
            subject,
            on_behalf_of,
            delegation,
            task,
            purpose,
            jti,
            ..
        } = self;
        let actors = delegation.iter_mut().flat_map(|actor| {
            std::iter::once(&mut actor.sub)
                .chain(actor.iss.iter_mut().chain(actor.client_id.iter_mut()))
        });
        [id, subject]
            .into_iter()
            .chain(
                [owner, on_behalf_of, task, purpose, jti]
                    .into_iter()
                    .flatten(),
            )
            .chain(actors)
    }
}

impl From<&Agent> for RecordAgent {
    fn from(agent: &Agent) -> Self {
        RecordAgent {
            id: agent.id.clone(),
            issuer: agent.issuer.clone(),
            owner: agent.owner.clone(),
            subject: agent.subject.clone(),
            on_behalf_of: agent.on_behalf_of.clone(),
            delegation: agent.delegation.clone(),
            task: agent.task.clone(),
            purpose: agent.purpose.clone(),
            registered: agent.registered,
            kid: agent.kid.clone(),
            jti: agent.jti.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct RecordRequest {
    pub method: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub id: Option<String>,
}

impl DecisionRecord {
    pub fn to_json(&self) -> String {
        // Serialising plain strings, numbers and maps cannot fail; keep a valid line regardless.
        serde_json::to_string(self).unwrap_or_else(|_| {
            format!(
                "{{\"decision_id\":\"{}\",\"error\":\"record_serialization\"}}",
                self.decision_id
            )
        })
    }

    /// The record as one JSON line of at most `max_bytes` where its own parts allow: when
    /// the input makes it longer, the input is erased (`"/input"` in `erased`, flag
    /// `input_too_large`); when it is still longer, the strings a client can make long
    /// ([`DecisionRecord::client_strings`]) are cut to [`CLIENT_STRING_BYTES`] each (flag
    /// `fields_truncated`; a grant header beyond `max_per_request` leaves one entry). What is
    /// left comes from the configuration and verified tokens.
    pub fn to_json_bounded(&mut self, max_bytes: usize) -> String {
        let line = self.to_json();
        if line.len() <= max_bytes {
            return line;
        }
        if self.input.is_some() {
            self.input = None;
            self.erased = vec!["/input".to_owned()];
            self.flags.push("input_too_large".to_owned());
            let line = self.to_json();
            if line.len() <= max_bytes {
                return line;
            }
        }
        let mut cut = false;
        for text in self.client_strings() {
            cut |= truncate_at_char(text, CLIENT_STRING_BYTES);
        }
        if cut {
            self.flags.push("fields_truncated".to_owned());
        }
        self.to_json()
    }

    /// Flags the record as one where a credential was masked (once).
    pub fn flag_credentials_masked(&mut self) {
        if !self
            .flags
            .iter()
            .any(|flag| flag == CREDENTIALS_MASKED_FLAG)
        {
            self.flags.push(CREDENTIALS_MASKED_FLAG.to_owned());
        }
    }

    /// Masks the credentials in the strings a client can make ([`mask_credentials`]; the
    /// input's are masked as it is written), and in the agent's, which its token's issuer
    /// wrote (a JWT as an `act.sub`). Called once the upstream's identity headers are made:
    /// they carry the agent as verified.
    pub fn mask_client_strings(&mut self) {
        let agent_masked = mask_each(self.agent.iter_mut().flat_map(RecordAgent::strings));
        if mask_each(self.client_strings()) | agent_masked {
            self.flag_credentials_masked();
        }
    }

    /// The record's strings a client can fill as it likes: the request's method, path, host
    /// and id, and the policy's reason and rule (a policy may build them from the request).
    fn client_strings(&mut self) -> impl Iterator<Item = &mut String> {
        let DecisionRecord {
            request,
            reason,
            rule,
            ..
        } = self;
        [
            &mut request.method,
            &mut request.path,
            &mut request.host,
            &mut request.id,
            rule,
        ]
        .into_iter()
        .flatten()
        .chain(std::iter::once(reason))
    }
}

/// Masks the credentials in each string; whether any had one.
fn mask_each<'s>(texts: impl Iterator<Item = &'s mut String>) -> bool {
    let mut masked = false;
    for text in texts {
        if let Cow::Owned(replaced) = mask_credentials(text) {
            *text = replaced;
            masked = true;
        }
    }
    masked
}

/// How much of each of a record's client strings it keeps when it is too long without its
/// input.
pub const CLIENT_STRING_BYTES: usize = 256;

/// Cuts `text` to at most `max` bytes, at a character's boundary; whether it cut.
pub(crate) fn truncate_at_char(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    true
}

/// What a record shows in place of a JWT it would otherwise carry.
pub const JWT_MASK: &str = "[REDACTED-JWT]";

/// What a record shows in place of an `access_token` query parameter's value (RFC 6750
/// section 2.3: a bearer token, JWT or not).
pub const TOKEN_MASK: &str = "[REDACTED]";

/// The query parameter RFC 6750 gives bearer tokens.
pub const ACCESS_TOKEN_PARAMETER: &str = "access_token";

/// The record flag saying a credential was masked somewhere in it.
pub const CREDENTIALS_MASKED_FLAG: &str = "credentials_masked";

/// `text` with its credentials masked: every JWT ([`mask_jwts`]) and the value of every
/// `access_token` parameter ([`TOKEN_MASK`]), whatever its shape, also where percent-escapes
/// hide them ([`mask_encoded`]).
pub fn mask_credentials(text: &str) -> Cow<'_, str> {
    let plain = mask_plain(text);
    if !plain.contains('%') {
        return plain;
    }
    match mask_encoded(&plain) {
        Cow::Borrowed(_) => plain,
        Cow::Owned(masked) => Cow::Owned(masked),
    }
}

/// The credentials written as they are: JWTs, then `access_token` values.
fn mask_plain(text: &str) -> Cow<'_, str> {
    match mask_jwts(text) {
        Cow::Borrowed(text) => mask_access_tokens(text),
        Cow::Owned(masked) => Cow::Owned(mask_access_tokens(&masked).into_owned()),
    }
}

/// `text` with the value of each `access_token=` parameter (at the start, or after `?`, `&`,
/// `;` or `#`, as OAuth's implicit grant returns it, up to `&`, `#` or a space) replaced by
/// [`TOKEN_MASK`], unless already masked. Linear in `text`: the search goes on after each
/// name, or after the value it masked.
fn mask_access_tokens(text: &str) -> Cow<'_, str> {
    let mut masked = String::new();
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = text[from..].find(ACCESS_TOKEN_PARAMETER) {
        let at = from + found;
        let named = at + ACCESS_TOKEN_PARAMETER.len();
        from = named;
        let parameter = at == 0 || matches!(text.as_bytes()[at - 1], b'?' | b'&' | b'#' | b';');
        if !parameter || text.as_bytes().get(named) != Some(&b'=') {
            continue;
        }
        let start = named + 1;
        let end = text[start..]
            .find(['&', '#', ' '])
            .map_or(text.len(), |length| start + length);
        let value = &text[start..end];
        if !value.is_empty() && value != JWT_MASK && value != TOKEN_MASK {
            masked.push_str(&text[copied..start]);
            masked.push_str(TOKEN_MASK);
            copied = end;
            // A parameter named again inside the masked value is masked with it.
            from = end;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    masked.push_str(&text[copied..]);
    Cow::Owned(masked)
}

/// How many times a piece is percent-decoded in search of a credential: an upstream that
/// decodes a parameter holding an encoded URL (a redirect inside a redirect) decodes twice.
const DECODING_ROUNDS: usize = 3;

/// `text` with each piece (between `/ ? & # ; ,` and spaces) that holds a credential once its
/// percent-escapes are decoded, up to [`DECODING_ROUNDS`] times (`access%5Ftoken=...`,
/// `next=%2Fapi%3Faccess_token%3D...`, `access%255Ftoken=...`, a JWT with `%2E` for its dots)
/// replaced by [`TOKEN_MASK`]: its value after a `=`, or the whole piece when what comes
/// before the `=` hides one too, or there is no `=`. An upstream decodes them, so a record
/// must not keep them encoded.
fn mask_encoded(text: &str) -> Cow<'_, str> {
    let is_delimiter = |c: char| matches!(c, '/' | '?' | '&' | '#' | ';' | ',' | ' ');
    let ends = text
        .match_indices(is_delimiter)
        .map(|(at, _)| at)
        .chain([text.len()]);
    let hides_credential = |part: &str| {
        let mut decoded = Cow::Borrowed(part);
        for _ in 0..DECODING_ROUNDS {
            let next = match crate::input::percent_decode_lossy(&decoded) {
                Cow::Borrowed(_) => return false,
                Cow::Owned(next) => next,
            };
            if matches!(mask_plain(&next), Cow::Owned(_)) {
                return true;
            }
            decoded = Cow::Owned(next);
        }
        false
    };
    let mut masked = String::new();
    let mut copied = 0;
    let mut start = 0;
    for end in ends {
        let piece = &text[start..end];
        if hides_credential(piece) {
            let value_start = match piece.find('=') {
                Some(at) if !hides_credential(&piece[..at]) => start + at + 1,
                _ => start,
            };
            masked.push_str(&text[copied..value_start]);
            masked.push_str(TOKEN_MASK);
            copied = end;
        }
        // Delimiters are ASCII: one byte.
        start = end + 1;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    masked.push_str(&text[copied..]);
    Cow::Owned(masked)
}

/// `text` with every JWT in it replaced by [`JWT_MASK`]: a client may put its bearer token
/// where chaperone does not read it from (a query parameter, another header, the path) and
/// records must not carry it. A JWT here is a JWS or JWE in compact form: three (five when
/// the header names an `enc`) base64url segments joined by dots, the first a JOSE header,
/// or a JWS's claims and signature without it ([`header_start`]), found anywhere in a run of
/// base64url characters and dots, so one glued to other characters (`%3DeyJ...`,
/// `v1.eyJ...`, `eyJ....pdf`) is masked too and what surrounds it stays. Text with fewer than
/// two dots is returned as it is.
pub fn mask_jwts(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    if !has_two_dots(bytes) {
        return Cow::Borrowed(text);
    }
    let is_token_byte = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    let mut masked = String::new();
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        let run = bytes[at..].iter().take_while(|b| is_token_byte(b)).count();
        if run == 0 {
            at += 1;
            continue;
        }
        for (start, end) in jwts_in_run(&bytes[at..at + run]) {
            // Offsets of ASCII bytes: character boundaries.
            masked.push_str(&text[copied..at + start]);
            masked.push_str(JWT_MASK);
            copied = at + end;
        }
        at += run;
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    masked.push_str(&text[copied..]);
    Cow::Owned(masked)
}

/// The byte ranges of the JWTs in a run of base64url characters and dots, in order.
fn jwts_in_run(run: &[u8]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    if !has_two_dots(run) {
        return found;
    }
    // (start, end) of each dot-separated segment.
    let mut segments = Vec::new();
    let mut start = 0;
    for (i, &b) in run.iter().enumerate() {
        if b == b'.' {
            segments.push((start, i));
            start = i + 1;
        }
    }
    segments.push((start, run.len()));
    let mut i = 0;
    while i < segments.len() {
        let (first, first_end) = segments[i];
        let Some((offset, kind)) = header_start(&run[first..first_end]) else {
            i += 1;
            continue;
        };
        let last = i + kind.segments() - 1;
        let Some(&(last_start, last_end)) = segments.get(last) else {
            // Too few segments after a header (an unsecured token cut short): the rest of
            // the run goes.
            found.push((first + offset, run.len()));
            break;
        };
        // Another token glued to this one's last segment (`...sig1eyJhbGc...`), or starting
        // it (an unsecured token's empty signature, `...payload1.eyJhbGc...`), ends this one
        // there, when the segments the next needs follow.
        let glued = header_start(&run[last_start..last_end])
            .filter(|&(_, next)| segments.len() >= last + next.segments());
        match glued {
            Some((at, _)) => {
                found.push((first + offset, last_start + at));
                segments[last].0 = last_start + at;
                i = last;
            }
            None => {
                found.push((first + offset, last_end));
                i += kind.segments();
            }
        }
    }
    found
}

/// Whether `bytes` hold at least two dots, as every token [`mask_jwts`] masks does.
fn has_two_dots(bytes: &[u8]) -> bool {
    bytes.iter().filter(|&&b| b == b'.').nth(1).is_some()
}

/// A compact JWS (three segments) or JWE (five), or what is left of a JWS without its header
/// (claims and signature, two): the header is predictable enough to put back.
#[derive(Debug, Clone, Copy)]
enum Compact {
    Jws,
    Jwe,
    Headless,
}

impl Compact {
    fn segments(self) -> usize {
        match self {
            Compact::Jws => 3,
            Compact::Jwe => 5,
            Compact::Headless => 2,
        }
    }
}

/// At most this many `eyJ` in one segment are tried as a header's start, so that a segment
/// of nothing else costs a bounded number of decodings.
const MAX_HEADER_CANDIDATES: usize = 4;

/// The shortest segment tried: `{"alg":"none"}`, the smallest JOSE header, in base64url.
const MIN_TOKEN_SEGMENT: usize = 19;

/// Where a token starts in a segment, and its kind: the segment from there must be base64url
/// of a JSON object, a JOSE header when it has a string `alg` (a JWE's also names `enc`),
/// else claims. Tried from the segment's start, then from each `eyJ` (`{"`, how every JOSE
/// library writes one), so one glued to other characters is found; ordinary words never
/// decode to a JSON object.
fn header_start(segment: &[u8]) -> Option<(usize, Compact)> {
    let candidates = std::iter::once(0).chain(
        segment
            .windows(3)
            .enumerate()
            .filter(|(at, window)| *at > 0 && *window == b"eyJ")
            .map(|(at, _)| at)
            .take(MAX_HEADER_CANDIDATES),
    );
    candidates
        .filter(|&at| segment.len() - at >= MIN_TOKEN_SEGMENT)
        .find_map(|at| jose_header(&segment[at..]).map(|kind| (at, kind)))
}

/// The kind of token whose first segment is `text`, when it is base64url of a JSON object.
fn jose_header(text: &[u8]) -> Option<Compact> {
    let json = crate::encoding::base64url_decode(text)?;
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&json).ok()?;
    Some(
        if !object.get("alg").is_some_and(serde_json::Value::is_string) {
            Compact::Headless
        } else if object.contains_key("enc") {
            Compact::Jwe
        } else {
            Compact::Jws
        },
    )
}

/// Decision ids for one VM: the VM's decision sequence number through a [`SecretHasher`], as
/// a UUID version 4. As unique as the sequence numbers and as hard to guess as random ids
/// (the key never leaves the VM), for a few arithmetic rounds per request instead of a call
/// to the host's randomness.
pub struct DecisionIds {
    hasher: SecretHasher,
}

impl DecisionIds {
    /// `key`: random bytes from the host, once per VM.
    pub fn new(key: [u8; 16]) -> Self {
        Self {
            hasher: SecretHasher::new(key),
        }
    }

    /// The id of the VM's decision number `seq`.
    pub fn id(&self, seq: u64) -> String {
        uuid_v4(self.hasher.digest(&seq.to_le_bytes()))
    }
}

/// A decision id: 16 random bytes as a UUID version 4, lower-case hex. Written digit by digit:
/// it is made for every request.
pub fn uuid_v4(mut bytes: [u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut id = String::with_capacity(36);
    for (index, byte) in bytes.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            id.push('-');
        }
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}

/// RFC 3339 UTC timestamp with nanoseconds, from Unix nanoseconds.
pub fn rfc3339(unix_ns: u64) -> String {
    let secs = unix_ns / 1_000_000_000;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    // Digit by digit, as decision ids are: every record has one.
    let mut text = String::with_capacity(30);
    let fields = [
        (year.unsigned_abs(), 4, '-'),
        (u64::from(month), 2, '-'),
        (u64::from(day), 2, 'T'),
        (rem / 3600, 2, ':'),
        ((rem % 3600) / 60, 2, ':'),
        (rem % 60, 2, '.'),
        (unix_ns % 1_000_000_000, 9, 'Z'),
    ];
    for (value, width, then) in fields {
        for position in (0..width).rev() {
            let digit = (value / 10u64.pow(position)) % 10;
            text.push(char::from(b'0' + digit as u8));
        }
        text.push(then);
    }
    text
}

/// Unix nanoseconds from an RFC 3339 UTC timestamp (`2026-11-24T11:04:05Z`, with an optional
/// fraction of up to nine digits): the inverse of [`rfc3339`]. Offsets other than `Z` are not
/// accepted: records are written in UTC.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let (date, time) = text.split_once(['T', 't'])?;
    let time = time.strip_suffix(['Z', 'z'])?;
    let mut date_parts = date.splitn(3, '-').map(|p| p.parse::<u32>().ok());
    let (year, month, day) = (
        date_parts.next()??,
        date_parts.next()??,
        date_parts.next()??,
    );
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut clock_parts = clock.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (hour, minute, second) = (
        clock_parts.next()??,
        clock_parts.next()??,
        clock_parts.next()??,
    );
    let valid = (1970..=9999).contains(&year)
        && (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61
        && fraction.len() <= 9
        && fraction.bytes().all(|b| b.is_ascii_digit());
    if !valid {
        return None;
    }
    let nanos = format!("{fraction:0<9}").parse::<u64>().ok()?;
    let days = u64::try_from(days_from_civil(i64::from(year), month, day)).ok()?;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// (year, month, day) to days since 1970-01-01 (Howard Hinnant's days-from-civil).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's civil-from-days algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::base64url_encode;

    fn segment(json: &str) -> String {
        base64url_encode(json.as_bytes())
    }

    #[test]
    fn jwts_are_masked_wherever_they_sit_in_a_string() {
        let header = segment(r#"{"alg":"ES256","kid":"k1"}"#);
        let payload = segment(r#"{"sub":"alice","exp":1}"#);
        let jws = format!("{header}.{payload}.c2lnbmF0dXJl");
        let unsecured = format!("{}.{payload}.", segment(r#"{"alg":"none"}"#));
        let jwe = format!(
            "{}..aXY.Y2lwaGVy.dGFn",
            segment(r#"{"alg":"dir","enc":"A128GCM"}"#)
        );
        let spaced = format!("{}.{payload}.c2ln", segment(" \n{\"alg\":\"RS256\"}"));
        let kid_enc = segment(r#"{"alg":"HS256","kid":"enc"}"#);
        for (text, expected) in [
            (
                format!("/tickets/1?access_token={jws}&x=1"),
                "/tickets/1?access_token=[REDACTED-JWT]&x=1",
            ),
            (format!("Bearer {jws}"), "Bearer [REDACTED-JWT]"),
            (
                format!("{jws},{unsecured}"),
                "[REDACTED-JWT],[REDACTED-JWT]",
            ),
            (format!("/t/{jwe}/x"), "/t/[REDACTED-JWT]/x"),
            // Found by tests/robustness.rs: the second token's payload and signature stayed.
            (format!("{jws}{jws}"), "[REDACTED-JWT][REDACTED-JWT]"),
            // Found by review: too few segments for the header's kind left the rest as it was.
            (format!("{unsecured}{jws}"), "[REDACTED-JWT][REDACTED-JWT]"),
            (format!("{kid_enc}.{payload}.c2ln"), "[REDACTED-JWT]"),
            (format!("é{spaced}é"), "é[REDACTED-JWT]é"),
        ] {
            assert_eq!(mask_jwts(&text), expected, "{text}");
        }
        // Glued to other characters: masked, and what surrounds it stays.
        for (text, expected) in [
            (
                format!("/cb?r=https%3A%2F%2Fx%2Fcb%3Ftoken%3D{jws}&a=1"),
                "/cb?r=https%3A%2F%2Fx%2Fcb%3Ftoken%3D[REDACTED-JWT]&a=1".to_owned(),
            ),
            (
                format!("Bearer%20{jws}"),
                "Bearer%20[REDACTED-JWT]".to_owned(),
            ),
            (
                format!("/files/{jws}.pdf"),
                "/files/[REDACTED-JWT].pdf".to_owned(),
            ),
            (
                format!("my token is {jws}."),
                "my token is [REDACTED-JWT].".to_owned(),
            ),
            (
                format!("v1.{jws}.{jwe}"),
                "v1.[REDACTED-JWT].[REDACTED-JWT]".to_owned(),
            ),
        ] {
            assert_eq!(mask_jwts(&text), expected, "{text}");
        }
        // Bearer tokens in `access_token` (RFC 6750), whatever their shape.
        for (text, expected) in [
            ("/t?access_token=abc&b=1", "/t?access_token=[REDACTED]&b=1"),
            ("access_token=abc#x", "access_token=[REDACTED]#x"),
            (
                "https://app/cb?x=1&access_token=abc def",
                "https://app/cb?x=1&access_token=[REDACTED] def",
            ),
            (
                "/t?my_access_token=abc&access_token=",
                "/t?my_access_token=abc&access_token=",
            ),
            ("/t;access_token=abc", "/t;access_token=[REDACTED]"),
            // OAuth's implicit grant returns the token in the fragment.
            (
                "https://app/cb#access_token=abc&token_type=bearer",
                "https://app/cb#access_token=[REDACTED]&token_type=bearer",
            ),
            // Found by review: hidden behind percent-escapes, which an upstream decodes.
            (
                "/cb?next=%2Fapi%3Faccess_token%3Dabc&x=1",
                "/cb?next=[REDACTED]&x=1",
            ),
            ("/t?access%5Ftoken=abc", "/t?access%5Ftoken=[REDACTED]"),
            ("/cb?next=/api%3Faccess_token%3Dabc", "/cb?next=/[REDACTED]"),
            ("/t?q=%2Fx%2Fy&r=100%25", "/t?q=%2Fx%2Fy&r=100%25"),
            // Encoded twice (a redirect inside a redirect) and three times.
            ("/t?access%255Ftoken=abc", "/t?access%255Ftoken=[REDACTED]"),
            (
                "/cb?next=%252Fapi%253Faccess_token%253Dabc&x=1",
                "/cb?next=[REDACTED]&x=1",
            ),
            (
                "/t?access%25255Ftoken=abc",
                "/t?access%25255Ftoken=[REDACTED]",
            ),
            ("/t?q=100%2525&r=%25252F", "/t?q=100%2525&r=%25252F"),
            // Found by tests/robustness.rs: this used to slice backwards and panic.
            (
                "/t?access_token=a?access_token=b,/t?access_token=c",
                "/t?access_token=[REDACTED]",
            ),
            (
                "/t?access_token=a&x=1&access_token=b",
                "/t?access_token=[REDACTED]&x=1&access_token=[REDACTED]",
            ),
        ] {
            assert_eq!(mask_credentials(text), expected, "{text}");
        }
        let query = format!("/t?access_token={jws}");
        assert_eq!(mask_credentials(&query), "/t?access_token=[REDACTED-JWT]");
        let dots_escaped = format!("/t?q={}&x=1", jws.replace('.', "%2E"));
        assert_eq!(mask_credentials(&dots_escaped), "/t?q=[REDACTED]&x=1");
        let dots_escaped_twice = format!("/t?q={}&x=1", jws.replace('.', "%252E"));
        assert_eq!(mask_credentials(&dots_escaped_twice), "/t?q=[REDACTED]&x=1");
        // Found by tests/robustness.rs: an escape that decodes to no UTF-8 (`%ae`) hid the rest.
        let after_bad_escape = format!("/t/%a{}", jws.replace('.', "%2E"));
        assert_eq!(mask_credentials(&after_bad_escape), "/t/[REDACTED]");
        // Dotted strings that are not JWTs stay as they are, borrowed.
        let short = format!("{header}.{payload}");
        for text in [
            "curl/8.5.0",
            "api.example.com",
            "a.b.c",
            "eyes.are.blue",
            "money.eyJ.x",
            "10.0.0.1",
            "v1.2.3",
            "/tickets/1",
            short.as_str(),
            // Found by review: words that start like `{"` in base64url were taken for headers.
            "/api/v1.2.exchange-rates",
            "alice@examples.co.uk",
            "exporter.svc.cluster.local",
            "q3.2024.expenses.eyeglasses-and-external-apps",
            "/authorize?redirect_uri=https%3A%2F%2Fexternal-app.example.com%2Fcb&state=x",
            "/search?q=caf%C3%A9&next=%2Fa%2Fb",
        ] {
            assert!(
                matches!(mask_credentials(text), Cow::Borrowed(same) if same == text),
                "{text}"
            );
        }
    }

    #[test]
    fn decision_ids_are_version_4_uuids() {
        let bytes: [u8; 16] = std::array::from_fn(|i| (i as u8).wrapping_mul(0x3b) ^ 0xa5);
        assert_eq!(uuid_v4(bytes), "a59ed314-4982-4738-bdb6-eb2c615a9fd0");
        assert_eq!(uuid_v4([0xff; 16]), "ffffffff-ffff-4fff-bfff-ffffffffffff");
        assert_eq!(uuid_v4([0; 16]), "00000000-0000-4000-8000-000000000000");
    }

    #[test]
    fn decision_ids_differ_by_sequence_and_by_seed() {
        let ids = DecisionIds::new([7; 16]);
        let first = ids.id(1);
        assert_eq!(
            first,
            ids.id(1),
            "the same seed and number give the same id"
        );
        assert_eq!(&first[14..15], "4", "version 4: {first}");
        let many: std::collections::HashSet<String> = (0..10_000).map(|seq| ids.id(seq)).collect();
        assert_eq!(many.len(), 10_000);
        assert_ne!(first, DecisionIds::new([8; 16]).id(1));
        // Not the sequence number in disguise: consecutive ids share no long prefix.
        assert_ne!(ids.id(1)[..8], ids.id(2)[..8]);
    }

    #[test]
    fn timestamps_parse_back() {
        for ns in [0, 951_782_400_000_000_001, 1_795_518_245_123_456_789] {
            assert_eq!(parse_rfc3339(&rfc3339(ns)), Some(ns));
        }
        assert_eq!(
            parse_rfc3339("2026-11-24T11:04:05Z"),
            Some(1_795_518_245_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-24T11:04:05.5Z"),
            Some(1_795_518_245_500_000_000)
        );
        for bad in [
            "2026-11-24",
            "2026-11-24T11:04:05+01:00",
            "2026-13-01T00:00:00Z",
            "x",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
        assert_eq!(
            rfc3339(1_795_518_245_123_456_789),
            "2026-11-24T11:04:05.123456789Z"
        );
        // The latest instant a host clock can give: still four digits of year.
        assert_eq!(rfc3339(u64::MAX), "2554-07-21T23:34:33.709551615Z");
    }
}
