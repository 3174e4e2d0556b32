//! `weft apply`, `weft get` and `weft delete`: Istio's resources, as kubectl handles
//! them.

use super::connect::{block_on, ConnectArgs};
use super::table::Table;
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use hyper::Method;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use weft_control::api::types::{
    Action, ChangeResponse, Document, DocumentsRequest, ResourceList, ServiceSummary,
};
use weft_control::client::{segment, ApiClient, ClientError};
use weft_control::resources::{parse_kind, qualified};
use weft_model::Kind;

/// Flags of `weft apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A file, a directory (its .yaml, .yml and .json files), or `-` for standard
    /// input. Repeatable. Each file is applied all or nothing.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Descend into subdirectories.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Show what would change (with the changed lines), change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply a file's valid resources even when some of its documents are invalid.
    #[arg(long)]
    pub partial: bool,
    /// Control-plane connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Flags of `weft delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Delete the resources these files describe (as `weft apply -f`).
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    /// Descend into subdirectories.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// KIND NAME [NAME...], when no file is given.
    pub names: Vec<String>,
    /// Namespace of the named resources.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Show what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Control-plane connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Output formats of `weft get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table (the default).
    Table,
    /// A table with more columns.
    Wide,
    /// YAML documents, as they can be applied again.
    Yaml,
    /// JSON.
    Json,
    /// `kind/name` lines.
    Name,
}

/// Flags of `weft get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// What to list: a kind (`virtualservices`, `vs`, `destinationrule`, ...) or
    /// `services`.
    pub kind: String,
    /// One resource's name.
    pub name: Option<String>,
    /// Namespace.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,
    /// Control-plane connection.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Reads the files `-f` names, in order; directories give their YAML and JSON files
/// sorted by name.
fn read_documents(paths: &[String], recursive: bool) -> anyhow::Result<Vec<Document>> {
    let mut out = Vec::new();
    for p in paths {
        if p == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("reading standard input")?;
            out.push(Document {
                source: "-".into(),
                text,
            });
            continue;
        }
        let path = PathBuf::from(p);
        if path.is_dir() {
            let mut files = Vec::new();
            collect_dir(&path, recursive, &mut files)?;
            if files.is_empty() {
                bail!("{p}: no .yaml, .yml or .json files");
            }
            for f in files {
                out.push(read_file(&f)?);
            }
        } else {
            out.push(read_file(&path)?);
        }
    }
    Ok(out)
}

fn collect_dir(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for e in entries {
        if e.is_dir() {
            if recursive {
                collect_dir(&e, recursive, out)?;
            }
        } else if matches!(
            e.extension().and_then(|x| x.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(e);
        }
    }
    Ok(())
}

fn read_file(path: &Path) -> anyhow::Result<Document> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Document {
        source: path.display().to_string(),
        text,
    })
}

/// Prints an error the API returned, detail by detail; the exit code is 1.
pub(crate) fn report(e: &ClientError) -> ExitCode {
    eprintln!("error: {e}");
    if let ClientError::Api { body, status } = e {
        for d in &body.details {
            eprintln!("  {d}");
        }
        if *status == hyper::StatusCode::UNAUTHORIZED {
            eprintln!(
                "  give the admin token with --token or WEFT_TOKEN (`weft control` wrote it to \
                 <data-dir>/admin-token at the mesh's first start)"
            );
        }
    }
    ExitCode::from(1)
}

fn print_changes(response: &ChangeResponse) {
    for w in &response.warnings {
        eprintln!("Warning: {w}");
    }
    for e in &response.errors {
        eprintln!("error: {e}");
    }
    let suffix = if response.dry_run { " (dry run)" } else { "" };
    for c in &response.results {
        let kind = parse_kind(&c.kind).map_or_else(|| c.kind.clone(), qualified);
        let ns = if c.namespace == "default" {
            String::new()
        } else {
            format!(" -n {}", c.namespace)
        };
        match c.action {
            Action::Deleted | Action::NotFound => {
                println!("{kind} \"{}\"{ns} {}{suffix}", c.name, c.action.as_str())
            }
            _ => println!("{kind}/{}{ns} {}{suffix}", c.name, c.action.as_str()),
        }
        if response.dry_run && !c.diff.is_empty() {
            for line in c.diff.lines() {
                println!("    {line}");
            }
        }
    }
}

fn query(dry_run: bool, partial: bool) -> String {
    let mut q = Vec::new();
    if dry_run {
        q.push("dryRun=true");
    }
    if partial {
        q.push("partial=true");
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// Runs `weft apply`.
pub fn apply(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let client = args.connect.client()?;
    let documents = read_documents(&args.files, args.recursive)?;
    block_on(async {
        let mut code = ExitCode::SUCCESS;
        // One request per file: each file lands all or nothing.
        for doc in documents {
            let request = DocumentsRequest {
                documents: vec![doc],
            };
            let path = format!("/api/v1/apply{}", query(args.dry_run, args.partial));
            match client
                .json::<ChangeResponse>(Method::POST, &path, Some(&request))
                .await
            {
                Ok(r) => {
                    if !r.errors.is_empty() {
                        code = ExitCode::from(1);
                    }
                    print_changes(&r);
                }
                Err(e) => code = report(&e),
            }
        }
        code
    })
}

/// Runs `weft delete`.
pub fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let client = args.connect.client()?;
    let dry = query(args.dry_run, false);
    if !args.files.is_empty() {
        if !args.names.is_empty() {
            bail!("give either -f FILE or KIND NAME, not both");
        }
        let documents = read_documents(&args.files, args.recursive)?;
        return block_on(async {
            let mut code = ExitCode::SUCCESS;
            for doc in documents {
                let request = DocumentsRequest {
                    documents: vec![doc],
                };
                match client
                    .json::<ChangeResponse>(
                        Method::POST,
                        &format!("/api/v1/delete{dry}"),
                        Some(&request),
                    )
                    .await
                {
                    Ok(r) => print_changes(&r),
                    Err(e) => code = report(&e),
                }
            }
            code
        });
    }
    let [kind_name, names @ ..] = args.names.as_slice() else {
        bail!("give -f FILE, or KIND NAME (for example: weft delete virtualservice reviews)");
    };
    if names.is_empty() {
        bail!("name the {kind_name} to delete");
    }
    let kind = kind_or_error(kind_name)?;
    block_on(async {
        let mut code = ExitCode::SUCCESS;
        for name in names {
            let path = format!(
                "/api/v1/resources/{kind}/{}/{}{dry}",
                segment(&args.namespace),
                segment(name)
            );
            match client
                .json::<ChangeResponse>(Method::DELETE, &path, None::<&()>)
                .await
            {
                Ok(r) => print_changes(&r),
                Err(e) => code = report(&e),
            }
        }
        code
    })
}

fn kind_or_error(name: &str) -> anyhow::Result<Kind> {
    parse_kind(name).ok_or_else(|| {
        let known: Vec<String> = Kind::ALL
            .iter()
            .map(|k| k.as_str().to_ascii_lowercase())
            .collect();
        anyhow::anyhow!(
            "unknown kind {name:?}; known: services, {}",
            known.join(", ")
        )
    })
}

/// Runs `weft get`.
pub fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let client = args.connect.client()?;
    let namespace = if args.all_namespaces {
        "*".to_string()
    } else {
        args.namespace.clone()
    };
    if matches!(
        args.kind.to_ascii_lowercase().as_str(),
        "services" | "service" | "svc"
    ) {
        return block_on(get_services(client, args, namespace))?;
    }
    let kind = kind_or_error(&args.kind)?;
    block_on(async {
        let items = match &args.name {
            Some(name) => {
                let path = format!(
                    "/api/v1/resources/{kind}/{}/{}",
                    segment(&args.namespace),
                    segment(name)
                );
                match client
                    .json::<serde_json::Value>(Method::GET, &path, None::<&()>)
                    .await
                {
                    Ok(v) => vec![v],
                    Err(e) => return Ok(report(&e)),
                }
            }
            None => {
                let path = format!("/api/v1/resources/{kind}?namespace={}", segment(&namespace));
                match client
                    .json::<ResourceList>(Method::GET, &path, None::<&()>)
                    .await
                {
                    Ok(list) => list.items,
                    Err(e) => return Ok(report(&e)),
                }
            }
        };
        print_resources(
            kind,
            &items,
            args.output,
            args.all_namespaces,
            args.name.is_some(),
        )?;
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })?
}

fn print_resources(
    kind: Kind,
    items: &[serde_json::Value],
    output: Output,
    all_namespaces: bool,
    single: bool,
) -> anyhow::Result<()> {
    match output {
        Output::Yaml => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    println!("---");
                }
                print!("{}", serde_yaml_ng::to_string(item)?);
            }
        }
        Output::Json => {
            let value = if single {
                items.first().cloned().unwrap_or_default()
            } else {
                serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
            };
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        Output::Name => {
            for item in items {
                println!("{}/{}", qualified(kind), text(&item["metadata"]["name"]));
            }
        }
        Output::Table | Output::Wide => {
            if items.is_empty() {
                eprintln!("No resources found.");
                return Ok(());
            }
            let wide = output == Output::Wide;
            let mut header = Vec::new();
            if all_namespaces {
                header.push("NAMESPACE");
            }
            header.push("NAME");
            header.extend(columns(kind, wide));
            let mut table = Table::new(&header);
            for item in items {
                let mut row = Vec::new();
                if all_namespaces {
                    row.push(text(&item["metadata"]["namespace"]));
                }
                row.push(text(&item["metadata"]["name"]));
                row.extend(cells(kind, &item["spec"], wide));
                table.row(row);
            }
            print!("{table}");
        }
    }
    Ok(())
}

/// A JSON value as a table cell: strings bare, lists joined, absent as `<none>`.
fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "<none>".into(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) if a.is_empty() => "<none>".into(),
        serde_json::Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(text).collect();
            format!("[{}]", parts.join(","))
        }
        serde_json::Value::Object(o) => {
            let parts: Vec<String> = o.iter().map(|(k, v)| format!("{k}={}", text(v))).collect();
            parts.join(",")
        }
        other => other.to_string(),
    }
}

fn columns(kind: Kind, wide: bool) -> Vec<&'static str> {
    match (kind, wide) {
        (Kind::VirtualService, _) => vec!["GATEWAYS", "HOSTS"],
        (Kind::DestinationRule, false) => vec!["HOST"],
        (Kind::DestinationRule, true) => vec!["HOST", "SUBSETS"],
        (Kind::ServiceEntry, _) => vec!["HOSTS", "LOCATION", "RESOLUTION"],
        (Kind::Gateway, _) => vec!["SELECTOR"],
        (Kind::Workload, _) => vec!["SERVICE", "ADDRESS"],
        (Kind::WorkloadEntry, _) => vec!["ADDRESS", "LABELS"],
        (Kind::AuthorizationPolicy, _) => vec!["ACTION"],
        (Kind::PeerAuthentication, _) => vec!["MODE"],
        _ => vec![],
    }
}

fn cells(kind: Kind, spec: &serde_json::Value, wide: bool) -> Vec<String> {
    match kind {
        Kind::VirtualService => vec![text(&spec["gateways"]), text(&spec["hosts"])],
        Kind::DestinationRule if wide => {
            let subsets: Vec<String> = spec["subsets"]
                .as_array()
                .map(|a| a.iter().map(|s| text(&s["name"])).collect())
                .unwrap_or_default();
            vec![text(&spec["host"]), subsets.join(",")]
        }
        Kind::DestinationRule => vec![text(&spec["host"])],
        Kind::ServiceEntry => vec![
            text(&spec["hosts"]),
            text(&spec["location"]),
            text(&spec["resolution"]),
        ],
        Kind::Gateway => vec![text(&spec["selector"])],
        Kind::Workload => vec![text(&spec["service"]), text(&spec["address"])],
        Kind::WorkloadEntry => vec![text(&spec["address"]), text(&spec["labels"])],
        Kind::AuthorizationPolicy => {
            let action = &spec["action"];
            vec![if action.is_null() {
                "ALLOW".into()
            } else {
                text(action)
            }]
        }
        Kind::PeerAuthentication => vec![text(&spec["mtls"]["mode"])],
        _ => vec![],
    }
}

async fn get_services(
    client: ApiClient,
    args: GetArgs,
    namespace: String,
) -> anyhow::Result<ExitCode> {
    let path = format!("/api/v1/services?namespace={}", segment(&namespace));
    let mut services = match client
        .json::<Vec<ServiceSummary>>(Method::GET, &path, None::<&()>)
        .await
    {
        Ok(s) => s,
        Err(e) => return Ok(report(&e)),
    };
    if let Some(name) = &args.name {
        services.retain(|s| &s.name == name || &s.hostname == name);
        if services.is_empty() {
            eprintln!("error: no service {name} in namespace {}", args.namespace);
            return Ok(ExitCode::from(1));
        }
    }
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&services)?),
        Output::Yaml => print!("{}", serde_yaml_ng::to_string(&services)?),
        Output::Name => {
            for s in &services {
                println!("service/{}", s.name);
            }
        }
        Output::Table | Output::Wide => {
            if services.is_empty() {
                eprintln!("No services found.");
                return Ok(ExitCode::SUCCESS);
            }
            let mut header = Vec::new();
            if args.all_namespaces {
                header.push("NAMESPACE");
            }
            header.extend(["NAME", "PORTS", "ENDPOINTS"]);
            if args.output == Output::Wide {
                header.push("HOSTNAME");
            }
            let mut table = Table::new(&header);
            for s in &services {
                let mut row = Vec::new();
                if args.all_namespaces {
                    row.push(s.namespace.clone());
                }
                let ports: Vec<String> = s
                    .ports
                    .iter()
                    .map(|p| format!("{}/{}", p.number, p.protocol.to_ascii_uppercase()))
                    .collect();
                row.push(s.name.clone());
                row.push(ports.join(","));
                row.push(format!("{}/{} healthy", s.healthy, s.instances));
                if args.output == Output::Wide {
                    row.push(s.hostname.clone());
                }
                table.row(row);
            }
            print!("{table}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
