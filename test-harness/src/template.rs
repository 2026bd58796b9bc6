//! `${NAME}` templates, as used by `envoy-config/quickstart.yaml` and `bench/*.yaml`.

use std::path::Path;

/// Replaces every `${NAME}` of the template with its value, in one pass (values are inserted
/// verbatim, never rescanned). A placeholder without a value is an error, so a template and its
/// caller cannot silently drift apart.
pub fn render_template(template: &str, vars: &[(&str, String)]) -> Result<String, String> {
    let mut rendered = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        rendered.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!(
                "unterminated template placeholder: {}",
                shorten(&rest[start..])
            ));
        };
        let name = &after[..end];
        let value = vars
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, value)| value)
            .ok_or_else(|| format!("template placeholder left unfilled: ${{{name}}}"))?;
        rendered.push_str(value);
        rest = &after[end + 1..];
    }
    rendered.push_str(rest);
    Ok(rendered)
}

fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

/// The shipped Envoy configurations the harness renders (files under `envoy-config/`).
pub const QUICKSTART: &str = "quickstart.yaml";
/// The quickstart plus an `idp_jwks` cluster on `${JWKS_PORT}`.
pub const REMOTE_JWKS: &str = "remote-jwks.yaml";
/// A file access log with every decision field, metric tags, and a `decision_collector`
/// cluster on `${COLLECTOR_PORT}`.
pub const OBSERVABILITY: &str = "observability.yaml";
/// The quickstart listener behind mutual TLS: `${SERVER_CERT_PATH}`, `${SERVER_KEY_PATH}` and
/// the clients' CA, `${CLIENT_CA_PATH}` (PEM files).
pub const MTLS: &str = "mtls.yaml";
/// The quickstart listener with chaperone's configuration from a watched ECDS file
/// (`${ECDS_PATH}`, rendered from `ecds-chaperone.yaml`).
pub const ECDS: &str = "ecds.yaml";

/// Renders the shipped quickstart template (`envoy-config/quickstart.yaml` under `workspace`)
/// with these ports, module and plugin configuration.
pub fn render_quickstart(
    workspace: &Path,
    ports: QuickstartPorts,
    wasm: &Path,
    plugin_config: &str,
) -> Result<String, String> {
    render_gateway_config(workspace, QUICKSTART, ports, &[], wasm, plugin_config)
}

/// Renders `envoy-config/<file>` with these ports, any further placeholders in `extra`, the
/// module and the plugin configuration. The configuration text becomes a JSON string literal,
/// which is also a valid YAML double-quoted scalar.
pub fn render_gateway_config(
    workspace: &Path,
    file: &str,
    ports: QuickstartPorts,
    extra: &[(&str, String)],
    wasm: &Path,
    plugin_config: &str,
) -> Result<String, String> {
    let path = workspace.join("envoy-config").join(file);
    let template =
        std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let quoted_config = serde_json::to_string(plugin_config).map_err(|e| e.to_string())?;
    let mut vars = vec![
        ("ADMIN_PORT", ports.admin.to_string()),
        ("LISTEN_PORT", ports.listen.to_string()),
        ("UPSTREAM_PORT", ports.upstream.to_string()),
        ("WASM_PATH", wasm.display().to_string()),
        ("PLUGIN_CONFIG", quoted_config),
    ];
    vars.extend(extra.iter().cloned());
    render_template(&template, &vars)
}

/// The three ports of the quickstart template.
#[derive(Debug, Clone, Copy)]
pub struct QuickstartPorts {
    pub listen: u16,
    pub admin: u16,
    pub upstream: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
    }

    #[test]
    fn fills_every_occurrence() {
        let rendered = render_template("${A}-${B}-${A}", &vars(&[("A", "1"), ("B", "two")]));
        assert_eq!(rendered.unwrap(), "1-two-1");
    }

    #[test]
    fn a_leftover_placeholder_is_an_error_naming_it() {
        let error =
            render_template("port: ${A}\nwasm: ${WASM_PATH}\n", &vars(&[("A", "1")])).unwrap_err();
        assert!(error.contains("${WASM_PATH}"), "{error}");
    }

    #[test]
    fn unused_values_are_fine_and_dollar_alone_is_left_alone() {
        let rendered = render_template("cost: $5 {x}", &vars(&[("A", "1")]));
        assert_eq!(rendered.unwrap(), "cost: $5 {x}");
    }

    #[test]
    fn values_are_inserted_verbatim() {
        // A plugin configuration may contain `${` inside a Rego string; it is not a placeholder.
        let rendered = render_template("${A}|${B}", &vars(&[("A", "${B}"), ("B", "2")]));
        assert_eq!(rendered.unwrap(), "${B}|2");
    }

    #[test]
    fn an_unterminated_placeholder_is_an_error() {
        assert!(render_template("x ${A", &vars(&[("A", "1")])).is_err());
    }

    #[test]
    fn the_shipped_quickstart_template_renders_with_a_json_string_config() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let config = r#"{"policy": {"modules": {"a.rego": "package x\n\"q\""}}}"#;
        let yaml = render_quickstart(
            workspace,
            QuickstartPorts {
                listen: 1001,
                admin: 1002,
                upstream: 1003,
            },
            Path::new("/x/chaperone.wasm"),
            config,
        )
        .unwrap();
        assert!(yaml.contains("port_value: 1001"));
        assert!(yaml.contains("port_value: 1002"));
        assert!(yaml.contains("port_value: 1003"));
        assert!(yaml.contains("filename: /x/chaperone.wasm"));
        // The config line is a JSON string literal that decodes back to the exact text.
        let line = yaml
            .lines()
            .find(|line| line.trim_start().starts_with("value: \""))
            .unwrap();
        let literal = line.trim_start().trim_start_matches("value: ");
        let decoded: String = serde_json::from_str(literal).unwrap();
        assert_eq!(decoded, config);
    }
}
