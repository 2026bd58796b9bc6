//! OPA builtins chaperone answers itself instead of regorus 0.14.1, registered on every
//! engine (an extension shadows the regorus builtin of the same name):
//!
//! - `regex.match` and `glob.match`, the two OPA-Envoy policies call per request, for speed:
//!   regorus caches compiled patterns (its `cache` feature) but hands each call a clone, and a
//!   cloned `regex::Regex` starts with an empty scratch pool, so every call built the lazy
//!   DFA's cache again (about 10 us in V8 for `^\d+$`). These match on the cached matcher in
//!   place, so its scratch survives the call.
//! - Where regorus answers otherwise than OPA, OPA's answer:
//!   - `regex.match`: `\d`, `\w`, `\s` and `\b` are ASCII, as in Go's RE2 (regorus, with the
//!     regex crate's Unicode classes, let `^\d+$` match Arabic-Indic digits and `^\w+$` a
//!     Cyrillic look-alike); `\pL`, `(?i)` and `.` stay Unicode, as in RE2.
//!   - `glob.match`: OPA's glob syntax (gobwas/glob), made into a regular expression.
//!     regorus handed globs to globset, whose rules differ: a `:` delimiter did not stop `*`
//!     (`tickets:*` matched `tickets:admin:write`), `[^a]` negated, `**/` matched zero
//!     segments, `?` matched a byte rather than a character and `a**b` did not cross a
//!     delimiter.
//!   - `strings.count`: counts non-overlapping occurrences, and an empty substring counts
//!     the characters plus one, as Go's `strings.Count` (regorus counted overlapping ones,
//!     and panicked on an empty substring, which aborts the VM).
//!   - `strings.replace_n`: one pass, as Go's `strings.NewReplacer` (regorus replaced pair
//!     after pair, so a later pair rewrote what an earlier one produced:
//!     `{"%2e": ".", "..": ""}` turned `%2e%2e/admin` into `/admin`, not `../admin`).
//!
//! Otherwise `regex.match` answers as regorus's: the same builder and limits, and errors where
//! regorus has errors (a unit test compares both over a grid of arguments). Errors become
//! `policy_error`, as regorus's builtin errors do in the strict mode chaperone evaluates in.
//!
//! Bounded: the last 256 regular expressions and the last 128 globs per configuration, as
//! regorus's own caches; each of a regular expression's lazy DFAs (up to two) keeps at most
//! `LAZY_DFA_BYTES` of transitions (beyond that the regex crate clears them or falls back to
//! a slower engine, with the same answer); a glob's regular expression is refused beyond
//! regorus's size for one, before it is compiled.

use crate::builtins::{arguments, text};
use anyhow::{anyhow, bail};
use lru::LruCache;
use regex::{Regex, RegexBuilder};
use regorus::{Engine, Value};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

pub const REGEX_MATCH: &str = "regex.match";
pub const GLOB_MATCH: &str = "glob.match";
pub const STRINGS_COUNT: &str = "strings.count";
pub const STRINGS_REPLACE_N: &str = "strings.replace_n";

const REGEX_CAPACITY: NonZeroUsize = capacity(256);
const GLOB_CAPACITY: NonZeroUsize = capacity(128);
/// regorus's limit on a compiled regular expression.
const REGEX_PROGRAM_BYTES: usize = 100 * 1024;
/// How much `strings.replace_n` may add to its subject: an empty old string inserts its new
/// one at every position, so a long subject and a long replacement would make a huge result.
const REPLACED_BYTES: usize = 1 << 20;
/// Per lazy DFA. The regex crate's default is 2 MiB; kept for 256 patterns of up to two lazy
/// DFAs each, that would allow 1 GiB.
const LAZY_DFA_BYTES: usize = 256 * 1024;

/// A cache size as the LRU cache takes it; a zero would leave room for one.
const fn capacity(entries: usize) -> NonZeroUsize {
    match NonZeroUsize::new(entries) {
        Some(entries) => entries,
        None => NonZeroUsize::MIN,
    }
}

/// Registers the builtins on `engine`, the pattern matchers each with its own bounded cache.
pub fn register(engine: &mut Engine) {
    let regexes: Shared<Regex> = Arc::new(Mutex::new(LruCache::new(REGEX_CAPACITY)));
    // An extension shadows the regorus builtin of the same name; registration fails only for
    // a name registered twice on one engine.
    let _ = engine.add_extension(
        REGEX_MATCH.to_owned(),
        2,
        Box::new(move |args: Vec<Value>| -> anyhow::Result<Value> {
            let [pattern, subject] = arguments::<2>(REGEX_MATCH, args)?;
            let pattern = text(REGEX_MATCH, "pattern", &pattern)?;
            let subject = text(REGEX_MATCH, "value", &subject)?;
            let compile = || build_regex(REGEX_MATCH, &with_ascii_perl_classes(pattern)?);
            let matched = with_cached(&regexes, pattern, compile, |re| re.is_match(subject))?;
            Ok(Value::from(matched))
        }),
    );
    let globs: Shared<Regex> = Arc::new(Mutex::new(LruCache::new(GLOB_CAPACITY)));
    let _ = engine.add_extension(
        GLOB_MATCH.to_owned(),
        3,
        Box::new(move |args: Vec<Value>| -> anyhow::Result<Value> {
            let [pattern, delimiters, subject] = arguments::<3>(GLOB_MATCH, args)?;
            let pattern = text(GLOB_MATCH, "pattern", &pattern)?;
            let subject = text(GLOB_MATCH, "match", &subject)?;
            let separators = separators(&delimiters)?;
            // Keyed by the separators and the pattern (the count first, so no two pairs make
            // one key): the translation runs only when the cache misses.
            let separator_text: String = separators.iter().collect();
            let key = format!("{}:{separator_text}{pattern}", separators.len());
            let compile = || build_regex(GLOB_MATCH, &glob_regex(pattern, &separators)?);
            let matched = with_cached(&globs, &key, compile, |re| re.is_match(subject))?;
            Ok(Value::from(matched))
        }),
    );
    let _ = engine.add_extension(
        STRINGS_COUNT.to_owned(),
        2,
        Box::new(|args: Vec<Value>| -> anyhow::Result<Value> {
            let [search, substring] = arguments::<2>(STRINGS_COUNT, args)?;
            let search = text(STRINGS_COUNT, "search", &search)?;
            let substring = text(STRINGS_COUNT, "substring", &substring)?;
            // An empty substring matches at every character boundary: characters plus one.
            Ok(Value::from(search.matches(substring).count()))
        }),
    );
    let _ = engine.add_extension(
        STRINGS_REPLACE_N.to_owned(),
        2,
        Box::new(|args: Vec<Value>| -> anyhow::Result<Value> {
            let [patterns, subject] = arguments::<2>(STRINGS_REPLACE_N, args)?;
            let patterns = patterns
                .as_object()
                .map_err(|_| anyhow!("{STRINGS_REPLACE_N}: patterns must be an object"))?;
            // In key order, as OPA hands them to Go's strings.NewReplacer.
            let pairs = patterns
                .iter()
                .map(|(old, new)| {
                    let old = text(STRINGS_REPLACE_N, "each key of patterns", old)?;
                    Ok((old, text(STRINGS_REPLACE_N, "each value of patterns", new)?))
                })
                .collect::<anyhow::Result<Vec<(&str, &str)>>>()?;
            let subject = text(STRINGS_REPLACE_N, "value", &subject)?;
            let replaced = replaced_in_one_pass(subject, &pairs, REPLACED_BYTES + subject.len())
                .ok_or_else(|| anyhow!("{STRINGS_REPLACE_N}: the result is too large"))?;
            Ok(Value::from(replaced))
        }),
    );
}

/// Go's `strings.NewReplacer(old1, new1, ...).Replace(subject)`: one pass from the left; at
/// each position the first pair whose old string starts there is replaced and the pass goes
/// on after it, so a replacement is never looked at again. An empty old string matches at
/// every position (once, before any other pair is tried there), on character boundaries.
/// `None` once the result would pass `max_bytes`.
fn replaced_in_one_pass(subject: &str, pairs: &[(&str, &str)], max_bytes: usize) -> Option<String> {
    let mut replaced = String::with_capacity(subject.len());
    let mut position = 0;
    let mut empty_matched_here = false;
    while let Some(rest) = subject.get(position..) {
        let pair = pairs
            .iter()
            .find(|(old, _)| !(empty_matched_here && old.is_empty()) && rest.starts_with(old));
        if let Some((old, new)) = pair {
            if replaced.len() + new.len() > max_bytes {
                return None;
            }
            replaced.push_str(new);
            position += old.len();
            empty_matched_here = old.is_empty();
            continue;
        }
        empty_matched_here = false;
        let Some(next) = rest.chars().next() else {
            break;
        };
        replaced.push(next);
        position += next.len_utf8();
    }
    Some(replaced)
}

type Shared<T> = Arc<Mutex<LruCache<Box<str>, T>>>;

/// `use_matcher` applied to the matcher cached under `key`, compiled and remembered first if
/// it is not there. The matcher is used in place, never cloned: that is what keeps its scratch.
fn with_cached<T, R>(
    cache: &Shared<T>,
    key: &str,
    compile: impl FnOnce() -> anyhow::Result<T>,
    use_matcher: impl FnOnce(&T) -> R,
) -> anyhow::Result<R> {
    let mut entries = cache.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(matcher) = entries.get(key) {
        return Ok(use_matcher(matcher));
    }
    let matcher = compile()?;
    let result = use_matcher(&matcher);
    entries.put(key.into(), matcher);
    Ok(result)
}

/// regorus's limit on the compiled program, and ours on the lazy DFA's scratch.
fn build_regex(builtin: &str, source: &str) -> anyhow::Result<Regex> {
    RegexBuilder::new(source)
        .size_limit(REGEX_PROGRAM_BYTES)
        .dfa_size_limit(LAZY_DFA_BYTES)
        .build()
        .map_err(|e| anyhow!("{builtin}: invalid pattern: {e}"))
}

/// `pattern` with RE2's meaning of `\d`, `\w`, `\s` (and their negations) and `\b`, `\B`:
/// ASCII only. Each class becomes a bracketed class, which is also valid inside brackets (a
/// nested class is a union); spaces are escaped so that `(?x)` cannot drop them. The word
/// boundaries RE2 does not have (`\<`, `\>`, `\b{start}` and the like) are errors, as in
/// OPA. A pattern that does not parse is left as it is, for the regex crate to refuse.
fn with_ascii_perl_classes(pattern: &str) -> anyhow::Result<std::borrow::Cow<'_, str>> {
    use regex_syntax::ast::{self, AssertionKind, Ast, ClassPerl, ClassPerlKind, ClassSetItem};

    #[derive(Default)]
    struct Spans(Vec<(usize, usize, &'static str)>);

    impl Spans {
        fn class(&mut self, class: &ClassPerl) {
            let ascii = match (&class.kind, class.negated) {
                (ClassPerlKind::Digit, false) => "[0-9]",
                (ClassPerlKind::Digit, true) => "[^0-9]",
                (ClassPerlKind::Word, false) => "[0-9A-Za-z_]",
                (ClassPerlKind::Word, true) => "[^0-9A-Za-z_]",
                (ClassPerlKind::Space, false) => r"[\t\n\f\r\x20]",
                (ClassPerlKind::Space, true) => r"[^\t\n\f\r\x20]",
            };
            self.0
                .push((class.span.start.offset, class.span.end.offset, ascii));
        }
    }

    impl ast::Visitor for Spans {
        type Output = Vec<(usize, usize, &'static str)>;
        /// A word boundary RE2 does not have.
        type Err = ();

        fn finish(self) -> Result<Self::Output, ()> {
            Ok(self.0)
        }

        fn visit_pre(&mut self, ast: &Ast) -> Result<(), ()> {
            match ast {
                Ast::ClassPerl(class) => self.class(class),
                Ast::Assertion(assertion) => {
                    let ascii = match assertion.kind {
                        AssertionKind::WordBoundary => r"(?-u:\b)",
                        AssertionKind::NotWordBoundary => r"(?-u:\B)",
                        AssertionKind::StartLine
                        | AssertionKind::EndLine
                        | AssertionKind::StartText
                        | AssertionKind::EndText => return Ok(()),
                        _ => return Err(()),
                    };
                    let span = assertion.span;
                    self.0.push((span.start.offset, span.end.offset, ascii));
                }
                _ => {}
            }
            Ok(())
        }

        fn visit_class_set_item_pre(&mut self, item: &ClassSetItem) -> Result<(), ()> {
            if let ClassSetItem::Perl(class) = item {
                self.class(class);
            }
            Ok(())
        }
    }

    let Ok(parsed) = ast::parse::Parser::new().parse(pattern) else {
        return Ok(pattern.into());
    };
    let Ok(mut spans) = ast::visit(&parsed, Spans::default()) else {
        bail!("{REGEX_MATCH}: invalid pattern: RE2 has no such word boundary");
    };
    if spans.is_empty() {
        return Ok(pattern.into());
    }
    spans.sort_unstable_by_key(|&(start, _, _)| start);
    let mut rewritten = String::with_capacity(pattern.len() + 16 * spans.len());
    let mut copied = 0;
    for (start, end, ascii) in spans {
        // Classes and assertions are leaves: their spans never overlap.
        let before = pattern
            .get(copied..start)
            .ok_or_else(|| anyhow!("{REGEX_MATCH}: internal error rewriting the pattern"))?;
        rewritten.push_str(before);
        rewritten.push_str(ascii);
        copied = end;
    }
    rewritten.push_str(pattern.get(copied..).unwrap_or_default());
    Ok(rewritten.into())
}

/// `glob.match`'s delimiters as OPA reads them: none for `null`, `.` for an empty array, and
/// otherwise each element a string of exactly one character.
fn separators(delimiters: &Value) -> anyhow::Result<Vec<char>> {
    let list = match delimiters {
        Value::Null => return Ok(Vec::new()),
        Value::Array(list) => list,
        _ => bail!("{GLOB_MATCH}: delimiters must be an array of characters or null"),
    };
    if list.is_empty() {
        return Ok(vec!['.']);
    }
    let mut separators = list
        .iter()
        .map(|delimiter| {
            let mut chars = text(GLOB_MATCH, "each delimiter", delimiter)?.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Ok(c),
                _ => bail!("{GLOB_MATCH}: each delimiter must be one character"),
            }
        })
        .collect::<anyhow::Result<Vec<char>>>()?;
    // Each separator appears once in every `*` and `?` of the regular expression.
    separators.sort_unstable();
    separators.dedup();
    Ok(separators)
}

/// OPA's glob (the gobwas/glob syntax) as an anchored regular expression: `*` is any run of
/// characters other than the separators, `**` any run at all, `?` one character other than a
/// separator, `{a,b}` alternatives (nested; only inside braces is `,` special), `\` makes the
/// next character literal, and a class is one character, a separator included: `[abc]` or
/// `[a-z]`, negated as `[!abc]` or `[!a-z]`. As in gobwas, a class is a range when its first
/// character, taken as it stands (a `\` too), is followed by `-`, and must then close;
/// otherwise it lists characters up to the first unescaped `]`, escapes resolved.
///
/// Errors, where gobwas/glob v0.2.3 (OPA's) has them: an unclosed `[`, a range not closed
/// after its last character or running backwards. Errors where it has none (failing closed):
/// an unclosed `{`, a trailing `\` and an empty class. And a regular expression beyond the
/// size regorus allows for one, so the work per call stays bounded.
fn glob_regex(pattern: &str, separators: &[char]) -> anyhow::Result<String> {
    let invalid = |why: &str| anyhow!("{GLOB_MATCH}: invalid pattern: {why}");
    let mut not_separator = String::from(".");
    if !separators.is_empty() {
        not_separator = String::from("[^");
        for &separator in separators {
            push_literal(separator, &mut not_separator);
        }
        not_separator.push(']');
    }
    let mut regex = String::from("(?s)^(?:");
    let mut open_braces = 0usize;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.next_if_eq(&'*').is_some() => regex.push_str(".*"),
            '*' => {
                regex.push_str(&not_separator);
                regex.push('*');
            }
            '?' => regex.push_str(&not_separator),
            '[' => {
                regex.push('[');
                if chars.next_if_eq(&'!').is_some() {
                    regex.push('^');
                }
                let first = chars.next().ok_or_else(|| invalid("unclosed ["))?;
                if chars.next_if_eq(&'-').is_some() {
                    let last = chars.next().ok_or_else(|| invalid("unclosed ["))?;
                    if chars.next() != Some(']') {
                        return Err(invalid("a range must close after its last character"));
                    }
                    if last < first {
                        return Err(invalid("a range may not run backwards"));
                    }
                    push_literal(first, &mut regex);
                    regex.push('-');
                    push_literal(last, &mut regex);
                } else {
                    let mut listed = 0usize;
                    let mut next = Some(first);
                    loop {
                        match next {
                            None => return Err(invalid("unclosed [")),
                            Some(']') => break,
                            Some('\\') => {
                                let escaped = chars.next().ok_or_else(|| invalid("unclosed ["))?;
                                push_literal(escaped, &mut regex);
                            }
                            Some(member) => push_literal(member, &mut regex),
                        }
                        listed += 1;
                        next = chars.next();
                    }
                    if listed == 0 {
                        return Err(invalid("an empty class"));
                    }
                }
                regex.push(']');
            }
            '{' => {
                open_braces += 1;
                regex.push_str("(?:");
            }
            ',' if open_braces > 0 => regex.push('|'),
            '}' if open_braces > 0 => {
                open_braces -= 1;
                regex.push(')');
            }
            '\\' => {
                let literal = chars.next().ok_or_else(|| invalid("a trailing \\"))?;
                push_literal(literal, &mut regex);
            }
            literal => push_literal(literal, &mut regex),
        }
        if regex.len() > REGEX_PROGRAM_BYTES {
            return Err(invalid("too large"));
        }
    }
    if open_braces > 0 {
        return Err(invalid("unclosed {"));
    }
    regex.push_str(")$");
    Ok(regex)
}

/// `c` as a regular expression matching it literally, inside a class too.
fn push_literal(c: char, regex: &mut String) {
    regex_syntax::escape_into(c.encode_utf8(&mut [0; 4]), regex);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// `x := expression` compiled on `engine`.
    fn compiled(mut engine: Engine, expression: &str) -> regorus::CompiledPolicy {
        engine
            .add_policy("t.rego".into(), format!("package t\n\nx := {expression}\n"))
            .unwrap();
        engine.compile_with_entrypoint(&"data.t.x".into()).unwrap()
    }

    /// What the policy gives for `input`: a value, or `None` for an error.
    fn outcome(policy: &regorus::CompiledPolicy, input: &serde_json::Value) -> Option<Value> {
        let input = Value::from_json_str(&input.to_string()).unwrap();
        policy.eval_with_input(input).ok()
    }

    /// Every case answered by chaperone's engine as by plain regorus, and the grid holds
    /// matches, misses and errors (so the comparison is not vacuous).
    fn same_answers_as_regorus(ours: &str, theirs: &str, inputs: &[serde_json::Value]) {
        let ours = compiled(crate::builtins::engine(), ours);
        let theirs = compiled(Engine::new(), theirs);
        let (mut matched, mut missed, mut failed) = (0, 0, 0);
        for input in inputs {
            // Twice: the second answer comes from the cached matcher.
            for _ in 0..2 {
                let answer = outcome(&ours, input);
                assert_eq!(answer, outcome(&theirs, input), "{input}");
                match answer {
                    Some(Value::Bool(true)) => matched += 1,
                    Some(_) => missed += 1,
                    None => failed += 1,
                }
            }
        }
        assert!(
            matched > 0 && missed > 0 && failed > 0,
            "{matched}/{missed}/{failed}"
        );
    }

    /// Patterns with `\d`, `\w`, `\s` or `\b` are compared with regorus's answer for their
    /// ASCII spelling (the second of each pair), the others with its answer for themselves.
    #[test]
    fn regex_match_answers_as_regorus() {
        let patterns = serde_json::json!([
            [r"^\d+$", "^[0-9]+$"],
            [r"\w+", "[0-9A-Za-z_]+"],
            [r"\bword\b", r"(?-u:\b)word(?-u:\b)"],
            [r"\D\W\S", r"[^0-9][^0-9A-Za-z_][^\t\n\f\r ]"],
            [r"^[\d.\s]+$", r"^[0-9.\t\n\f\r ]+$"],
            [r"(?x) ^ \s \d $ ", r"^[\t\n\f\r ][0-9]$"],
            [r"\w{1000}", "[0-9A-Za-z_]{1000}"],
            [r"(?i)^abc$", r"(?i)^abc$"],
            [r"\pL", r"\pL"],
            [r"\pL{20}", r"\pL{20}"],
            ["^[0-9]+$", "^[0-9]+$"],
            ["", ""],
            [".*", ".*"],
            ["a(b", "a(b"],
            ["^/api/v[0-9]+/[^/]+$", "^/api/v[0-9]+/[^/]+$"],
            ["^é$", "^é$"],
            [7, 7],
            [null, null]
        ]);
        let subjects = serde_json::json!([
            "12345",
            "abc",
            "ABC",
            "é",
            "word here",
            "",
            "/api/v1/x",
            "a\nb",
            "١٢٣",
            "аdmin",
            "\u{a0}",
            "\u{b}",
            " 7",
            "1.2 3",
            "x!y",
            ["x"],
            1
        ]);
        let mut inputs = Vec::new();
        for pair in patterns.as_array().unwrap() {
            for subject in subjects.as_array().unwrap() {
                inputs.push(
                    serde_json::json!({"pattern": pair[0], "ascii": pair[1], "subject": subject}),
                );
            }
        }
        same_answers_as_regorus(
            "regex.match(input.pattern, input.subject)",
            "regex.match(input.ascii, input.subject)",
            &inputs,
        );
    }

    /// Go's RE2, which OPA uses: `\d`, `\w`, `\s` and `\b` are ASCII (`\s` without the vertical
    /// tab), Unicode classes, case folding and `.` are Unicode.
    #[test]
    fn regex_match_answers_as_re2() {
        let cases: [(&str, &str, bool); 16] = [
            (r"^\d+$", "0123456789", true),
            (r"^\d+$", "١٢٣", false),
            (r"^\d+$", "１２３", false),
            (r"^\w+$", "admin_1", true),
            (r"^\w+$", "аdmin", false),
            (r"^\s$", "\t", true),
            (r"^\s$", "\u{a0}", false),
            (r"^\s$", "\u{b}", false),
            (r"\bbot\b", "support bot", true),
            (r"\bbot\b", "robot", false),
            (r"^\D$", "١", true),
            (r"^[\d.]+$", "١.٢", false),
            (r"^\S+$", "a b", false),
            (r"^\pL+$", "équipe", true),
            ("(?i)^équipe$", "ÉQUIPE", true),
            ("^.$", "é", true),
        ];
        for (pattern, subject, expected) in cases {
            let quoted = |text: &str| serde_json::to_string(text).unwrap();
            let expression = format!("regex.match({}, {})", quoted(pattern), quoted(subject));
            let answer = crate::builtins::tests::evaluate(&expression).unwrap();
            assert_eq!(answer, Value::from(expected), "{expression}");
        }
    }

    /// Word boundaries RE2 does not have are errors, as in OPA, rather than Unicode ones.
    #[test]
    fn regex_match_refuses_word_boundaries_re2_lacks() {
        for pattern in [
            r"\<a",
            r"a\>",
            r"\b{start}a",
            r"a\b{end}",
            r"\b{start-half}a",
        ] {
            let expression = format!(
                "regex.match({}, \"a\")",
                serde_json::to_string(pattern).unwrap()
            );
            assert!(
                crate::builtins::tests::evaluate(&expression).is_err(),
                "{pattern}"
            );
        }
    }

    /// A glob's regular expression repeats the separator class at every `*` and `?`: with
    /// many of both it would grow without bound, so it stops at regorus's size for one.
    #[test]
    fn glob_translation_is_bounded() {
        let separators: Vec<String> = ('a'..='z').chain('A'..='Z').map(String::from).collect();
        let policy = compiled(
            crate::builtins::engine(),
            r#"glob.match(input.pattern, input.delimiters, "x")"#,
        );
        let input = serde_json::json!({"pattern": "?".repeat(50_000), "delimiters": separators});
        let input = Value::from_json_str(&input.to_string()).unwrap();
        let refused = policy.eval_with_input(input).unwrap_err();
        assert!(refused.to_string().contains("too large"), "{refused}");
    }

    /// Go's `strings.NewReplacer`, as OPA calls it with the pairs in key order.
    #[test]
    fn strings_replace_n_answers_as_go() {
        for (patterns, subject, expected) in [
            (r#"{"%2e": ".", "..": ""}"#, "%2e%2e/admin", "../admin"),
            (r#"{"a": "b", "b": "c"}"#, "ab", "bc"),
            (r#"{"a": "1", "ab": "2"}"#, "abab", "1b1b"),
            (r#"{"ab": "2", "b": "3"}"#, "abb", "23"),
            (r#"{"aa": "x"}"#, "aaa", "xa"),
            (r#"{"": "x"}"#, "ab", "xaxbx"),
            (r#"{"": "x", "a": "y"}"#, "ab", "xyxbx"),
            (r#"{"é": "e"}"#, "équipe", "equipe"),
            ("{}", "same", "same"),
        ] {
            let expression = format!("strings.replace_n({patterns}, {subject:?})");
            let answer = crate::builtins::tests::evaluate(&expression).unwrap();
            assert_eq!(answer, Value::from(expected), "{expression}");
        }
        // An empty old string inserts its new one at every position: bounded.
        let policy = compiled(
            crate::builtins::engine(),
            r#"strings.replace_n({"": input.new}, input.subject)"#,
        );
        let input = serde_json::json!({"new": "x".repeat(1000), "subject": "y".repeat(2000)});
        let input = Value::from_json_str(&input.to_string()).unwrap();
        let refused = policy.eval_with_input(input).unwrap_err();
        assert!(refused.to_string().contains("too large"), "{refused}");
        for wrong in [
            r#"strings.replace_n({"a": 1}, "a")"#,
            r#"strings.replace_n({1: "a"}, "a")"#,
            r#"strings.replace_n(["a"], "a")"#,
            r#"strings.replace_n({"a": "b"}, 1)"#,
        ] {
            assert!(crate::builtins::tests::evaluate(wrong).is_err(), "{wrong}");
        }
    }

    /// Go's `strings.Count`: non-overlapping, and an empty substring counts the characters
    /// plus one (regorus panicked on it).
    #[test]
    fn strings_count_answers_as_go() {
        for (search, substring, expected) in [
            ("cheese", "e", 3),
            ("aaa", "aa", 1),
            ("abc", "", 4),
            ("équipe", "", 7),
            ("", "", 1),
            ("", "a", 0),
        ] {
            let expression = format!("strings.count({search:?}, {substring:?})");
            let answer = crate::builtins::tests::evaluate(&expression).unwrap();
            assert_eq!(answer, Value::from(expected), "{expression}");
        }
        assert!(crate::builtins::tests::evaluate("strings.count(1, \"a\")").is_err());
    }

    /// OPA's reference examples for `glob.match`, gobwas/glob's own test vectors (the library
    /// OPA matches globs with; `null` delimiters where it has no separators), how its lexer
    /// reads classes, and the cases where regorus answered otherwise (`None`: an error, so
    /// `policy_error`).
    #[test]
    fn glob_match_answers_as_opa() {
        let a100 = "a".repeat(100);
        let a100b = format!("{a100}b");
        let cases: Vec<(&str, &str, &str, Option<bool>)> = vec![
            // OPA's reference
            ("*.github.com", "[]", "api.github.com", Some(true)),
            ("*.github.com", "[]", "api.cdn.github.com", Some(false)),
            ("*hub.com", "null", "api.cdn.github.com", Some(true)),
            ("*:github:com", r#"[":"]"#, "api:github:com", Some(true)),
            ("api.**.com", "[]", "api.github.com", Some(true)),
            ("api.**.com", "[]", "api.cdn.github.com", Some(true)),
            ("?at", "[]", "cat", Some(true)),
            ("?at", "[]", "at", Some(false)),
            ("[abc]at", "[]", "bat", Some(true)),
            ("[abc]at", "[]", "lat", Some(false)),
            ("[!abc]at", "[]", "cat", Some(false)),
            ("[!a-c]at", "[]", "lat", Some(true)),
            ("{cat,bat,[fr]at}", "[]", "rat", Some(true)),
            ("{cat,bat,[fr]at}", "[]", "at", Some(false)),
            (
                "config/*.yaml",
                r#"["/", "."]"#,
                "config/app.yaml",
                Some(true),
            ),
            (
                "api-*.example.com",
                r#"[".", "-"]"#,
                "api-v2.example.com",
                Some(true),
            ),
            (
                "*:*/pod",
                r#"[":", "/"]"#,
                "kube-system:nginx/pod",
                Some(true),
            ),
            ("*:*/*", r#"[":", "/"]"#, "app:service/endpoint", Some(true)),
            // gobwas/glob
            ("a*a*a*a*b", "null", &a100, Some(false)),
            ("a*a*a*a*b", "null", &a100b, Some(true)),
            ("{a,ab}c", "null", "abc", Some(true)),
            (
                "* ?at * eyes",
                "null",
                "my cat has very bright eyes",
                Some(true),
            ),
            ("", "null", "", Some(true)),
            ("", "null", "b", Some(false)),
            ("*ä", "null", "åä", Some(true)),
            ("a.*", r#"["."]"#, "a.b", Some(true)),
            ("a.**", r#"["."]"#, "a.b.c", Some(true)),
            ("a.?.c", r#"["."]"#, "a.b.c", Some(true)),
            ("?at", r#"["f"]"#, "fat", Some(false)),
            ("a.*", r#"["."]"#, "a.b.c", Some(false)),
            ("a.?.c", r#"["."]"#, "a.bb.c", Some(false)),
            ("*", r#"["."]"#, "a.b.c", Some(false)),
            ("**", r#"["."]"#, "a.b.c", Some(true)),
            (r"\*", "null", "*", Some(true)),
            ("[!a]*", "null", "this is a test3", Some(true)),
            ("{,a}", "null", "", Some(true)),
            ("{a,}", "null", "", Some(true)),
            ("{*,**}{a,b}", "null", "ab", Some(true)),
            ("{*,**}{a,b}", "null", "ac", Some(false)),
            (
                "{*.google.*,*.yandex.*}",
                r#"["."]"#,
                "www.google.com",
                Some(true),
            ),
            (
                "{*.google.*,*.yandex.*}",
                r#"["."]"#,
                "google.com",
                Some(false),
            ),
            (
                "*//{,*.}example.com",
                "null",
                "https://www.example.com",
                Some(true),
            ),
            (
                "*//{,*.}example.com",
                "null",
                "http://example.com.net",
                Some(false),
            ),
            (
                "[a-z][!a-x]*cat*[h][!b]*eyes*",
                "null",
                "my cat has very bright eyes",
                Some(true),
            ),
            (
                "[a-z][!a-x]*cat*[h][!b]*eyes*",
                "null",
                "my dog has very bright eyes",
                Some(false),
            ),
            ("**a*b", r#"["."]"#, ".a.ab", Some(true)),
            ("*a**b", r#"["."]"#, "x.ab", Some(false)),
            ("**.x", r#"["."]"#, "a.b.x", Some(true)),
            ("{{a,b},c}", "null", "c", Some(true)),
            ("{ab*}x", "null", "zzx", Some(false)),
            ("[!a]", "null", "\u{fffd}", Some(true)),
            ("[abc", "null", "a", None),
            ("[a-cx]", "null", "a", None),
            ("[c-a]", "null", "b", None),
            // classes as gobwas lexes them: a range only when the first character, as it
            // stands, is followed by `-`; otherwise a list with escapes resolved
            (r"[\a-z]", "null", "m", Some(false)),
            (r"[\a-z]", "null", "-", Some(true)),
            (r"[a\-z]", "null", "m", Some(false)),
            (r"[a-\z]", "null", "m", None),
            (r"[a\-]", "null", "a", Some(true)),
            (r"[\-a]", "null", "_", Some(true)),
            ("[]-a]", "null", "_", Some(true)),
            (r"[\]]", "null", "]", Some(true)),
            // refused, failing closed, where gobwas/glob v0.2.3 accepts
            ("{a,b", "null", "a", None),
            (r"a\", "null", "a", None),
            ("[]", "null", "a", None),
            // where regorus answered otherwise
            ("tickets:*", r#"[":"]"#, "tickets:read", Some(true)),
            ("tickets:*", r#"[":"]"#, "tickets:admin:write", Some(false)),
            ("tickets:**", r#"[":"]"#, "tickets:admin:write", Some(true)),
            ("*:read", r#"[".", ":"]"#, "a.b:read", Some(false)),
            ("[^a]*", r#"["."]"#, "bob", Some(false)),
            ("[^a]*", r#"["."]"#, "^x", Some(true)),
            ("**/x", r#"["/"]"#, "x", Some(false)),
            ("/api/**/x", r#"["/"]"#, "/api/x", Some(false)),
            ("?", r#"["."]"#, "é", Some(true)),
            ("a**b", r#"["."]"#, "a.x.b", Some(true)),
            ("[.]", r#"["."]"#, ".", Some(true)),
            ("[!a]", r#"["."]"#, ".", Some(true)),
            ("*", r#"["é"]"#, "aéb", Some(false)),
            ("*", r#"[""]"#, "a", None),
            ("*", r#"["ab"]"#, "a", None),
            ("*", "[1]", "a", None),
            ("*", r#"".""#, "a", None),
        ];
        let quoted = |text: &str| serde_json::to_string(text).unwrap();
        for (pattern, delimiters, subject, expected) in cases {
            let expression = format!(
                "glob.match({}, {delimiters}, {})",
                quoted(pattern),
                quoted(subject)
            );
            let answer = crate::builtins::tests::evaluate(&expression).ok();
            assert_eq!(answer, expected.map(Value::from), "{expression}");
        }
    }

    /// More patterns than the cache holds: the evicted ones are compiled again, with the same
    /// answers.
    #[test]
    fn patterns_beyond_the_capacity_still_answer() {
        let policy = compiled(
            crate::builtins::engine(),
            "regex.match(input.pattern, input.subject)",
        );
        for round in 0..2 {
            for n in 1..=REGEX_CAPACITY.get() + 44 {
                let input = serde_json::json!({"pattern": format!("^a{{{n}}}$"), "subject": "a".repeat(n + round)});
                assert_eq!(
                    outcome(&policy, &input),
                    Some(Value::from(round == 0)),
                    "{n}"
                );
            }
        }
    }
}
