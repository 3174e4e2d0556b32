//! The kubectl-like CLI against a real control plane: apply from files, directories
//! and standard input, dry runs, `get` in every format (its YAML applies back
//! unchanged), `delete`, `describe`, `proxy-status`, `token`, clear errors, the client
//! config file, and no answer without a credential.

mod support;

use std::io::Write;
use std::process::{Output, Stdio};
use support::*;

/// The admin token of the test's control plane.
static ADMIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `weft ARGS` with the admin token in `WEFT_TOKEN`.
fn run(args: &[&str], stdin: Option<&str>) -> Output {
    run_with(args, stdin, ADMIN.get().map_or("", String::as_str))
}

fn run_with(args: &[&str], stdin: Option<&str>, token: &str) -> Output {
    let mut child = weft()
        .args(args)
        .env("WEFT_TOKEN", token)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    child.wait_with_output().expect("output")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

const NETWORKING: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/bookinfo/networking"
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_resources() {
    let dir = TempDir::new("cli");
    let control = Control::start(&dir.0, "control", &dir.join("data"), &[]);
    let server = control.api.to_string();
    let s = server.as_str();
    ADMIN
        .set(control.token.clone())
        .expect("one control plane per test binary");

    // Nothing without a credential, and the error says where to find one.
    let o = run_with(&["get", "services", "--server", s], None, "");
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("a credential is required"), "{err}");
    assert!(err.contains("admin-token"), "{err}");
    let o = run_with(&["get", "services", "--server", s], None, "not-a-token");
    assert!(text(&o).1.contains("not a token"), "{:?}", text(&o));

    // A directory: every file in name order, each all or nothing.
    let o = run(&["apply", "--server", s, "-f", NETWORKING], None);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains("gateway.networking.istio.io/bookinfo-gateway created"),
        "{out}"
    );
    assert!(
        out.contains("destinationrule.networking.istio.io/reviews created"),
        "{out}"
    );
    assert!(
        out.contains("virtualservice.networking.istio.io/reviews configured"),
        "{out}"
    );

    let o = run(
        &[
            "apply",
            "--server",
            s,
            "-f",
            &format!("{NETWORKING}/virtual-service-all-v1.yaml"),
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o).1);

    // Dry run: says what would change, with the lines, and changes nothing.
    let o = run(
        &[
            "apply",
            "--server",
            s,
            "--dry-run",
            "-f",
            &format!("{NETWORKING}/virtual-service-reviews-50-50.yaml"),
        ],
        None,
    );
    let (out, _) = text(&o);
    assert!(
        out.contains("virtualservice.networking.istio.io/reviews configured (dry run)"),
        "{out}"
    );
    assert!(out.contains("+ ") && out.contains("subset: v3"), "{out}");
    let o = run(&["get", "vs", "reviews", "--server", s, "-o", "json"], None);
    let (out, _) = text(&o);
    assert!(
        !out.contains("v3"),
        "the dry run changed the resource: {out}"
    );

    // A table, wide, names, and all namespaces.
    let o = run(&["get", "virtualservices", "--server", s], None);
    let (out, _) = text(&o);
    assert!(out.starts_with("NAME"), "{out}");
    for name in ["details", "productpage", "ratings", "reviews"] {
        assert!(out.contains(name), "{out}");
    }
    let o = run(&["get", "dr", "-o", "wide", "--server", s], None);
    assert!(text(&o).0.contains("v1,v2,v3"), "{}", text(&o).0);
    let o = run(&["get", "dr", "-A", "-o", "name", "--server", s], None);
    assert!(text(&o)
        .0
        .contains("destinationrule.networking.istio.io/reviews"));

    // `get -o yaml` prints what applies back unchanged, from standard input.
    let o = run(&["get", "vs", "-o", "yaml", "--server", s], None);
    let yaml = text(&o).0;
    assert!(
        yaml.contains("apiVersion: networking.istio.io/v1"),
        "{yaml}"
    );
    let o = run(&["apply", "--server", s, "-f", "-"], Some(&yaml));
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(out.matches("unchanged").count(), 5, "{out}");

    // Invalid input: the error names file, line and field; nothing changes.
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination:\n        host: reviews\n      weight: ten\n",
    )
    .expect("write");
    let o = run(
        &["apply", "--server", s, "-f", bad.to_str().expect("path")],
        None,
    );
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("bad.yaml:11:"), "{err}");
    assert!(err.contains("spec.http[0].route[0].weight"), "{err}");
    assert!(err.contains("nothing was applied"), "{err}");

    // describe and proxy-status.
    let o = run(&["describe", "service", "reviews", "--server", s], None);
    let (out, err) = text(&o);
    // No reviews instance is registered: the service is unknown.
    assert!(!o.status.success(), "{out}");
    assert!(err.contains("no service reviews"), "{err}");
    let o = run(&["proxy-status", "--server", s], None);
    assert!(o.status.success());
    assert!(text(&o).1.contains("No proxies connected"));

    // delete by file and by name.
    let o = run(
        &[
            "delete",
            "--server",
            s,
            "-f",
            &format!("{NETWORKING}/virtual-service-all-v1.yaml"),
        ],
        None,
    );
    let (out, _) = text(&o);
    assert!(
        out.contains("virtualservice.networking.istio.io \"reviews\" deleted"),
        "{out}"
    );
    let o = run(
        &[
            "delete",
            "destinationrule",
            "reviews",
            "ratings",
            "--server",
            s,
        ],
        None,
    );
    assert!(o.status.success(), "{}", text(&o).1);
    let o = run(&["get", "dr", "--server", s, "-o", "name"], None);
    let (out, _) = text(&o);
    assert!(!out.contains("reviews") && out.contains("details"), "{out}");
    let o = run(&["delete", "dr", "nope", "--server", s], None);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("not found"));

    // Unknown kinds and an unreachable server are clear errors.
    let o = run(&["get", "pods", "--server", s], None);
    assert!(
        text(&o).1.contains("unknown kind \"pods\""),
        "{}",
        text(&o).1
    );
    let o = run(&["get", "vs", "--server", "127.0.0.1:1"], None);
    assert!(
        text(&o)
            .1
            .contains("cannot reach the control plane at 127.0.0.1:1"),
        "{}",
        text(&o).1
    );

    // The client config file, as kubectl's kubeconfig.
    let config = dir.join("config.yaml");
    std::fs::write(&config, format!("server: {s}\ntoken: {}\n", control.token)).expect("config");
    let o = weft()
        .args(["get", "dr", "-o", "name"])
        .env("WEFT_CONFIG", &config)
        .output()
        .expect("weft");
    assert!(text(&o).0.contains("details"), "{:?}", text(&o));

    // Join tokens: created (printed alone), listed (never the token), revoked.
    let o = run(
        &["token", "create", "--service", "reviews", "--server", s],
        None,
    );
    let (token, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("spiffe://cluster.local/ns/default/sa/reviews"),
        "{err}"
    );
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let o = run(&["token", "list", "--server", s], None);
    let (list, _) = text(&o);
    assert!(
        list.contains("default/reviews") && list.contains("admin"),
        "{list}"
    );
    assert!(!list.contains(token), "tokens are never listed");
    // A join token cannot administer the mesh.
    let o = run_with(&["get", "services", "--server", s], None, token);
    assert!(text(&o).1.contains("cannot use GET"), "{:?}", text(&o));
    let id = list
        .lines()
        .find(|l| l.contains("default/reviews"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the token's id");
    let o = run(&["token", "revoke", id, "--server", s], None);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = run_with(&["get", "services", "--server", s], None, token);
    assert!(text(&o).1.contains("revoked"), "{:?}", text(&o));
}
