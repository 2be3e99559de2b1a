//! The configuration directory, read into typed resources.
//!
//! Files: every `*.yaml`/`*.yml` directly in the directory, sorted by name, following
//! symlinks (Kubernetes ConfigMap volumes are symlinks into `..data/`), skipping hidden files
//! and editor temporaries. Each file holds any number of documents; a document is one resource
//! or a `kind: List` of them. The header (`apiVersion`, `kind`) is read first and picks the
//! spec type, so an unknown kind is reported as such rather than as a pile of field errors.
//!
//! Every problem of the directory is collected: a resource that does not decode is reported
//! and left out, and loading goes on with the next one. Problems that are not inside a file's
//! text (the directory cannot be read, a file is too large) have line 0.
//!
//! Files are read and parsed on a few threads (YAML parsing is most of the cost), then
//! decoded in file order, so results and problems come out in the same order every time.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use serde::Deserialize;

use super::de::{DecodeError, decode};
use super::resources::{self, Kind, Metadata, Spec};
use super::yaml::{Document, FieldLines, Node, NodeValue, YamlError, compose};
use super::{Limits, Origin, Problem, Resource};

/// Every header a resource may carry, in the order listed to users.
const HEADERS: [(&str, &str); 13] = [
    (resources::CALICO_V3, "GlobalNetworkPolicy"),
    (resources::CALICO_V3, "NetworkPolicy"),
    (resources::CALICO_V3, "Tier"),
    (resources::CALICO_V3, "Profile"),
    (resources::CALICO_V3, "GlobalNetworkSet"),
    (resources::CALICO_V3, "NetworkSet"),
    (resources::CALICO_V3, "HostEndpoint"),
    (resources::CALICO_V3, "WorkloadEndpoint"),
    (resources::CALICO_V3, "FelixConfiguration"),
    (resources::K8S_NETWORKING_V1, "NetworkPolicy"),
    (resources::CORE_V1, "Namespace"),
    (resources::CORE_V1, "policy"),
    (resources::PORTCULLIS_V1, "GatewayConfiguration"),
];

const LIST_KIND: &str = "List";
const NO_RESOURCE: &str = "-";
const NO_FIELD: &str = "-";

/// Load every resource of `dir`.
pub fn load_dir(dir: &Path, limits: &Limits) -> (Vec<Resource>, Vec<Problem>) {
    let mut loader = Loader::new(limits);
    let dir_name = dir.display().to_string();
    match yaml_file_names(dir) {
        Err(e) => loader.file_problem(&dir_name, format!("cannot read directory: {e}")),
        Ok(mut names) => {
            if names.len() > limits.max_files {
                loader.file_problem(
                    &dir_name,
                    format!(
                        "{} YAML files, more than the limit of {}; only the first {} are read",
                        names.len(),
                        limits.max_files,
                        limits.max_files
                    ),
                );
                names.truncate(limits.max_files);
            }
            let paths: Vec<PathBuf> = names.iter().map(|name| dir.join(name)).collect();
            let composed = parallel_map(&paths, |path| {
                read_capped(path, limits.max_file_bytes).map(|text| compose(&text, limits))
            });
            for (path, composed) in paths.iter().zip(composed) {
                let file = path.display().to_string();
                match composed {
                    Some(Ok(documents)) => loader.load_documents(&file, documents),
                    Some(Err(message)) => loader.file_problem(&file, message),
                    None => loader.file_problem(&file, "internal error while reading".to_owned()),
                }
                if loader.full {
                    break;
                }
            }
        }
    }
    loader.finish()
}

/// Load the resources of one file's text; `file_name` is how problems name the file.
pub fn load_str(file_name: &str, text: &str, limits: &Limits) -> (Vec<Resource>, Vec<Problem>) {
    let mut loader = Loader::new(limits);
    if text.len() as u64 > limits.max_file_bytes {
        loader.file_problem(
            file_name,
            too_large(text.len() as u64, limits.max_file_bytes),
        );
    } else {
        loader.load_text(file_name, text);
    }
    loader.finish()
}

/// Names of the files of `dir` to load, sorted (bytewise).
fn yaml_file_names(dir: &Path) -> std::io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        // Judged on the lossy form so that a name that is not UTF-8 is still loaded (and
        // shown with replacement characters) rather than silently ignored.
        if !is_config_file_name(&name.to_string_lossy()) {
            continue;
        }
        // `fs::metadata` follows symlinks; a dangling one is kept so that reading reports it.
        if fs::metadata(entry.path()).is_ok_and(|m| !m.is_file()) {
            continue;
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// Threads used to parse files; parsing dominates loading and files are independent.
const MAX_LOAD_THREADS: usize = 8;

/// `work` applied to every item, on a few threads, results in item order. An item whose
/// work panicked (a bug, in this crate or the YAML parser) gives `None` rather than taking
/// the whole load down.
fn parallel_map<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<Option<R>> {
    let guarded = |item: &T| catch_unwind(AssertUnwindSafe(|| work(item))).ok();
    let threads = thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(MAX_LOAD_THREADS)
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(guarded).collect();
    }
    let next = AtomicUsize::new(0);
    let worker = || {
        let mut done = Vec::new();
        loop {
            // Relaxed: the counter only hands out distinct indices; results come back
            // through `join`, which synchronises.
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(index) else {
                return done;
            };
            done.push((index, guarded(item)));
        }
    };
    let batches: Vec<Vec<(usize, Option<R>)>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .filter_map(|_| {
                thread::Builder::new()
                    .name("config-load".to_owned())
                    .spawn_scoped(scope, worker)
                    .ok()
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    if batches.is_empty() {
        // No thread could be started: do the work here.
        return items.iter().map(guarded).collect();
    }
    let mut results: Vec<Option<R>> = items.iter().map(|_| None).collect();
    for (index, result) in batches.into_iter().flatten() {
        results[index] = result;
    }
    results
}

/// Whether a directory entry named `name` is a configuration file: `*.yaml`/`*.yml`, not hidden
/// and not an editor temporary. The directory watcher uses the same test to decide which
/// changes can matter, so the two never disagree.
pub fn is_config_file_name(name: &str) -> bool {
    let temporary = name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".tmp");
    !temporary && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

fn too_large(size: u64, max: u64) -> String {
    format!("file is {size} bytes, more than the limit of {max}")
}

/// Read a file as UTF-8, refusing it before reading when it is over `max_bytes` (and not
/// trusting the size seen then: a file growing meanwhile is still cut off at the limit).
fn read_capped(path: &Path, max_bytes: u64) -> Result<String, String> {
    let cannot_read = |e: std::io::Error| format!("cannot read file: {e}");
    let size = fs::metadata(path).map_err(cannot_read)?.len();
    if size > max_bytes {
        return Err(too_large(size, max_bytes));
    }
    let file = fs::File::open(path).map_err(cannot_read)?;
    let mut bytes = Vec::new();
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!(
            "file grew past the limit of {max_bytes} bytes while being read"
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "file is not valid UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// The resources and problems gathered so far.
struct Loader<'l> {
    limits: &'l Limits,
    resources: Vec<Resource>,
    problems: Vec<Problem>,
    /// Resources seen, decoded or not, against `max_resources`.
    seen: usize,
    /// Set once `max_resources` is passed: nothing more is loaded.
    full: bool,
}

/// Where a problem is, inside one file.
struct At<'a> {
    file: &'a str,
    line: usize,
    resource: &'a str,
}

impl<'l> Loader<'l> {
    fn new(limits: &'l Limits) -> Loader<'l> {
        Loader {
            limits,
            resources: Vec::new(),
            problems: Vec::new(),
            seen: 0,
            full: false,
        }
    }

    fn finish(self) -> (Vec<Resource>, Vec<Problem>) {
        (self.resources, self.problems)
    }

    fn file_problem(&mut self, file: &str, message: String) {
        self.problems.push(Problem {
            file: file.to_owned(),
            line: 0,
            resource: NO_RESOURCE.to_owned(),
            field: NO_FIELD.to_owned(),
            message,
        });
    }

    fn problem(&mut self, at: &At<'_>, field: &str, message: String) {
        self.problems.push(Problem {
            file: at.file.to_owned(),
            line: at.line,
            resource: at.resource.to_owned(),
            field: field.to_owned(),
            message,
        });
    }

    fn load_text(&mut self, file: &str, text: &str) {
        let documents = compose(text, self.limits);
        self.load_documents(file, documents);
    }

    fn load_documents(&mut self, file: &str, documents: Vec<Result<Document, YamlError>>) {
        for document in documents {
            if self.full {
                return;
            }
            match document {
                Ok(document) => self.load_document(file, Arc::new(document)),
                Err(e) => self.problems.push(Problem {
                    file: file.to_owned(),
                    line: e.line,
                    resource: NO_RESOURCE.to_owned(),
                    field: NO_FIELD.to_owned(),
                    message: format!("{} (column {})", e.message, e.column),
                }),
            }
        }
    }

    fn load_document(&mut self, file: &str, document: Arc<Document>) {
        let root = document.root();
        if root.is_null() {
            return;
        }
        let at = At {
            file,
            line: root.line(),
            resource: NO_RESOURCE,
        };
        if root.entries().is_none() {
            self.problem(
                &at,
                NO_FIELD,
                format!(
                    "a document must be a mapping with apiVersion and kind, found {}",
                    root.describe()
                ),
            );
            return;
        }
        let Some((api_version, kind)) = self.read_header(&at, root, "") else {
            return;
        };
        if kind == LIST_KIND && api_version == resources::CORE_V1 {
            self.load_list(file, &document, root);
        } else {
            self.load_resource(file, &document, root, api_version, kind, "");
        }
    }

    /// `apiVersion` and `kind` of an object; reports them missing or not strings.
    fn read_header<'d>(
        &mut self,
        at: &At<'_>,
        object: Node<'d>,
        prefix: &str,
    ) -> Option<(&'d str, &'d str)> {
        let mut field = |name: &str| -> Option<&'d str> {
            let found = object.entry(name);
            let text = found.and_then(|(_, value)| match value.value() {
                NodeValue::Scalar { text, .. } if !value.is_null() => Some(text),
                _ => None,
            });
            if text.is_none() {
                let (line, message) = match found {
                    Some((key, value)) => (
                        key.line(),
                        format!("expected a string, found {}", value.describe()),
                    ),
                    None => (at.line, format!("missing {name}")),
                };
                let at = At { line, ..*at };
                self.problem(&at, &format!("{prefix}{name}"), message);
            }
            text
        };
        let api_version = field("apiVersion");
        let kind = field("kind");
        Some((api_version?, kind?))
    }

    fn load_list(&mut self, file: &str, document: &Arc<Document>, list: Node<'_>) {
        let at = At {
            file,
            line: list.line(),
            resource: NO_RESOURCE,
        };
        let mut items = None;
        for (key, value) in list.entries().into_iter().flatten() {
            match key.as_scalar().unwrap_or_default() {
                "apiVersion" | "kind" | "metadata" => {}
                "items" => items = Some(value),
                other => self.problem(
                    &At {
                        line: key.line(),
                        ..at
                    },
                    other,
                    format!(
                        "unknown field {other:?} in a List; \
                         expected one of apiVersion, kind, metadata, items"
                    ),
                ),
            }
        }
        let Some(items) = items.filter(|items| !items.is_null()) else {
            return;
        };
        let Some(items) = items.items() else {
            self.problem(
                &At {
                    line: items.line(),
                    ..at
                },
                "items",
                format!("expected a sequence, found {}", items.describe()),
            );
            return;
        };
        for (index, item) in items.enumerate() {
            if self.full {
                return;
            }
            self.load_list_item(file, document, item, index);
        }
    }

    fn load_list_item(
        &mut self,
        file: &str,
        document: &Arc<Document>,
        item: Node<'_>,
        index: usize,
    ) {
        let prefix = format!("items[{index}].");
        let at = At {
            file,
            line: item.line(),
            resource: NO_RESOURCE,
        };
        if item.entries().is_none() {
            self.problem(
                &at,
                &format!("items[{index}]"),
                format!(
                    "a List item must be a mapping with apiVersion and kind, found {}",
                    item.describe()
                ),
            );
            return;
        }
        let Some((api_version, kind)) = self.read_header(&at, item, &prefix) else {
            return;
        };
        if kind == LIST_KIND {
            self.problem(
                &at,
                &format!("{prefix}kind"),
                "a List may not contain a List".to_owned(),
            );
            return;
        }
        self.load_resource(file, document, item, api_version, kind, &prefix);
    }

    fn count_resource(&mut self, at: &At<'_>) -> bool {
        self.seen += 1;
        if self.seen > self.limits.max_resources {
            self.full = true;
            self.problem(
                at,
                NO_FIELD,
                format!(
                    "more than {} resources in the directory; the rest is not read",
                    self.limits.max_resources
                ),
            );
            return false;
        }
        true
    }

    /// Decode one resource. `prefix` names it inside a List (`items[3].`) for problems that
    /// come before its kind is known.
    fn load_resource(
        &mut self,
        file: &str,
        document: &Arc<Document>,
        object: Node<'_>,
        api_version: &str,
        kind_word: &str,
        prefix: &str,
    ) {
        let at = At {
            file,
            line: object.line(),
            resource: NO_RESOURCE,
        };
        if !self.count_resource(&at) {
            return;
        }
        let Some(kind) = Kind::from_header(api_version, kind_word) else {
            let field = format!("{prefix}kind");
            self.problem(&at, &field, unknown_kind_message(api_version, kind_word));
            return;
        };
        let label = resource_label(kind, object);
        let at = At {
            resource: &label,
            ..at
        };
        let mut metadata_node = None;
        let mut spec_node = None;
        let mut fine = true;
        for (key, value) in object.entries().into_iter().flatten() {
            match key.as_scalar().unwrap_or_default() {
                "apiVersion" | "kind" => {}
                "metadata" => metadata_node = Some(value),
                "spec" => spec_node = Some(value),
                "status" if matches!(kind, Kind::Namespace | Kind::K8sNetworkPolicy) => {}
                other => {
                    fine = false;
                    let expected = if matches!(kind, Kind::Namespace | Kind::K8sNetworkPolicy) {
                        "apiVersion, kind, metadata, spec, status"
                    } else {
                        "apiVersion, kind, metadata, spec"
                    };
                    self.problem(
                        &At {
                            line: key.line(),
                            ..at
                        },
                        other,
                        format!("unknown field {other:?}; expected one of {expected}"),
                    );
                }
            }
        }
        let metadata = self.decode_part::<Metadata>(&at, metadata_node, "metadata");
        let spec = match spec_node {
            Some(node) => self.decode_spec(&at, kind, node),
            None => Some(default_spec(kind)),
        };
        if let (Some(metadata), Some(spec), true) = (metadata, spec, fine) {
            self.resources.push(Resource {
                origin: Origin {
                    file: file.to_owned(),
                    line: object.line(),
                },
                metadata,
                spec,
                fields: FieldLines::new(Arc::clone(document), object.id()),
            });
        }
    }

    /// Decode an optional part of a resource (absent means default), reporting a failure.
    fn decode_part<'d, T: Deserialize<'d> + Default>(
        &mut self,
        at: &At<'_>,
        node: Option<Node<'d>>,
        base: &str,
    ) -> Option<T> {
        match node {
            None => Some(T::default()),
            Some(node) => decode(node)
                .map_err(|e| self.decode_problem(at, base, &e))
                .ok(),
        }
    }

    fn decode_problem(&mut self, at: &At<'_>, base: &str, error: &DecodeError) {
        let at = At {
            line: error.line().unwrap_or(at.line),
            ..*at
        };
        self.problem(&at, &error.path(base), error.message().to_owned());
    }

    fn decode_spec(&mut self, at: &At<'_>, kind: Kind, node: Node<'_>) -> Option<Spec> {
        fn part<'d, T: Deserialize<'d> + Default>(
            loader: &mut Loader<'_>,
            at: &At<'_>,
            node: Node<'d>,
            wrap: fn(T) -> Spec,
        ) -> Option<Spec> {
            loader.decode_part(at, Some(node), "spec").map(wrap)
        }
        match kind {
            Kind::Namespace => part(self, at, node, Spec::Namespace),
            Kind::WorkloadEndpoint => part(self, at, node, Spec::WorkloadEndpoint),
            Kind::HostEndpoint => part(self, at, node, Spec::HostEndpoint),
            Kind::NetworkSet => part(self, at, node, Spec::NetworkSet),
            Kind::GlobalNetworkSet => part(self, at, node, Spec::GlobalNetworkSet),
            Kind::Profile => part(self, at, node, Spec::Profile),
            Kind::Tier => part(self, at, node, Spec::Tier),
            Kind::GlobalNetworkPolicy => part(self, at, node, Spec::GlobalNetworkPolicy),
            Kind::NetworkPolicy => part(self, at, node, Spec::NetworkPolicy),
            Kind::V1Policy => part(self, at, node, Spec::V1Policy),
            Kind::K8sNetworkPolicy => part(self, at, node, Spec::K8sNetworkPolicy),
            Kind::FelixConfiguration => part(self, at, node, Spec::FelixConfiguration),
            Kind::GatewayConfiguration => part(self, at, node, Spec::GatewayConfiguration),
        }
    }
}

/// The spec of a resource written without one.
fn default_spec(kind: Kind) -> Spec {
    match kind {
        Kind::Namespace => Spec::Namespace(Default::default()),
        Kind::WorkloadEndpoint => Spec::WorkloadEndpoint(Default::default()),
        Kind::HostEndpoint => Spec::HostEndpoint(Default::default()),
        Kind::NetworkSet => Spec::NetworkSet(Default::default()),
        Kind::GlobalNetworkSet => Spec::GlobalNetworkSet(Default::default()),
        Kind::Profile => Spec::Profile(Default::default()),
        Kind::Tier => Spec::Tier(Default::default()),
        Kind::GlobalNetworkPolicy => Spec::GlobalNetworkPolicy(Default::default()),
        Kind::NetworkPolicy => Spec::NetworkPolicy(Default::default()),
        Kind::V1Policy => Spec::V1Policy(Default::default()),
        Kind::K8sNetworkPolicy => Spec::K8sNetworkPolicy(Default::default()),
        Kind::FelixConfiguration => Spec::FelixConfiguration(Default::default()),
        Kind::GatewayConfiguration => Spec::GatewayConfiguration(Default::default()),
    }
}

/// How problems name a resource, read straight from its nodes so that it works even when
/// its metadata does not decode: the same form as [`Resource::problem_label`].
fn resource_label(kind: Kind, object: Node<'_>) -> String {
    let metadata = object.get("metadata");
    let text_of = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .filter(|v| !v.is_null())
            .and_then(|v| v.as_scalar())
            .filter(|s| !s.is_empty())
    };
    let resource = Resource {
        origin: Origin {
            file: String::new(),
            line: 0,
        },
        metadata: Metadata {
            name: text_of("name").map(str::to_owned),
            namespace: text_of("namespace").map(str::to_owned),
            ..Metadata::default()
        },
        spec: default_spec(kind),
        fields: FieldLines::default(),
    };
    resource.problem_label()
}

fn unknown_kind_message(api_version: &str, kind: &str) -> String {
    let versions_of_kind: Vec<&str> = HEADERS
        .iter()
        .filter(|(_, k)| *k == kind)
        .map(|(v, _)| *v)
        .collect();
    if !versions_of_kind.is_empty() {
        return format!(
            "kind {kind} is not known in apiVersion {api_version}; it needs apiVersion {}",
            versions_of_kind.join(" or ")
        );
    }
    let known: Vec<String> = HEADERS.iter().map(|(v, k)| format!("{k} ({v})")).collect();
    format!(
        "unknown kind {kind} in apiVersion {api_version}; expected one of {}, or List (v1)",
        known.join(", ")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::model::resources::{IntOrString, PortValue};

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "portcullis-load-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn write(&self, name: &str, text: &str) -> &Scratch {
            let path = self.0.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
            self
        }

        fn file(&self, name: &str) -> String {
            self.0.join(name).display().to_string()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn gnp(name: &str) -> String {
        format!(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata:\n  name: {name}\nspec:\n  selector: all()\n"
        )
    }

    fn names(resources: &[Resource]) -> Vec<String> {
        resources.iter().map(Resource::display_name).collect()
    }

    fn messages(problems: &[Problem]) -> Vec<String> {
        problems.iter().map(ToString::to_string).collect()
    }

    fn load(text: &str) -> (Vec<Resource>, Vec<Problem>) {
        load_str("test.yaml", text, &Limits::default())
    }

    #[test]
    fn loads_a_global_network_policy_and_a_kubernetes_policy() {
        let text = concat!(
            "apiVersion: projectcalico.org/v3\n",                       // 1
            "kind: GlobalNetworkPolicy\n",                              // 2
            "metadata:\n",                                              // 3
            "  name: allow-web\n",                                      // 4
            "  labels: {enabled: no}\n",                                // 5
            "spec:\n",                                                  // 6
            "  order: 10.5\n",                                          // 7
            "  selector: role == 'web'\n",                              // 8
            "  ingress:\n",                                             // 9
            "    - action: Allow\n",                                    // 10
            "      protocol: TCP\n",                                    // 11
            "      destination:\n",                                     // 12
            "        ports: [80, '8080:8090']\n",                       // 13
            "---\n",                                                    // 14
            "apiVersion: networking.k8s.io/v1\n",                       // 15
            "kind: NetworkPolicy\n",                                    // 16
            "metadata: {name: db, namespace: prod}\n",                  // 17
            "spec:\n",                                                  // 18
            "  podSelector: {matchLabels: {app: db}}\n",                // 19
            "  ingress:\n",                                             // 20
            "    - ports: [{port: 5432}, {port: pg, protocol: TCP}]\n", // 21
            "status: {}\n",                                             // 22
        );
        let (resources, problems) = load(text);
        assert!(problems.is_empty(), "{:?}", messages(&problems));
        assert_eq!(
            names(&resources),
            ["GlobalNetworkPolicy/allow-web", "NetworkPolicy/prod/db"]
        );

        let policy = &resources[0];
        assert_eq!(
            policy.origin,
            Origin {
                file: "test.yaml".into(),
                line: 1
            }
        );
        assert_eq!(policy.metadata.labels["enabled"], "no");
        let Spec::GlobalNetworkPolicy(spec) = &policy.spec else {
            panic!("not a GNP: {:?}", policy.spec);
        };
        assert_eq!(spec.order, Some(10.5));
        assert_eq!(
            spec.ingress[0].destination.ports,
            [PortValue::Number(80), PortValue::Text("8080:8090".into())]
        );
        assert_eq!(policy.line_of("spec.ingress[0].destination.ports[1]"), 13);
        assert_eq!(policy.line_of("spec.ingress[0].source.nets"), 10);
        assert_eq!(policy.problem("spec.selector", "bad").line, 8);

        let knp = &resources[1];
        assert_eq!(knp.origin.line, 15);
        let Spec::K8sNetworkPolicy(spec) = &knp.spec else {
            panic!("not a KNP: {:?}", knp.spec);
        };
        assert_eq!(spec.pod_selector.match_labels["app"], "db");
        let ports: Vec<_> = spec.ingress[0]
            .ports
            .iter()
            .map(|p| p.port.clone())
            .collect();
        assert_eq!(
            ports,
            [
                Some(IntOrString::Int(5432)),
                Some(IntOrString::Text("pg".into()))
            ]
        );
        assert_eq!(knp.line_of("spec.ingress[0].ports[1].protocol"), 21);
    }

    #[test]
    fn lists_unpack_into_resources_with_their_own_lines() {
        let text = concat!(
            "apiVersion: v1\n",                                  // 1
            "kind: List\n",                                      // 2
            "metadata: {resourceVersion: ''}\n",                 // 3
            "items:\n",                                          // 4
            "  - apiVersion: projectcalico.org/v3\n",            // 5
            "    kind: Tier\n",                                  // 6
            "    metadata: {name: security}\n",                  // 7
            "    spec: {order: 100}\n",                          // 8
            "  - apiVersion: v1\n",                              // 9
            "    kind: Namespace\n",                             // 10
            "    metadata: {name: prod, labels: {env: prod}}\n", // 11
            "    status: {phase: Active}\n",                     // 12
            "  - apiVersion: v1\n",                              // 13
            "    kind: List\n",                                  // 14
            "    items: []\n",                                   // 15
            "  - just a string\n",                               // 16
        );
        let (resources, problems) = load(text);
        assert_eq!(names(&resources), ["Tier/security", "Namespace/prod"]);
        let lines: Vec<usize> = resources.iter().map(|r| r.origin.line).collect();
        assert_eq!(lines, [5, 9]);
        assert_eq!(resources[1].line_of("metadata.labels.env"), 11);
        assert_eq!(
            messages(&problems),
            [
                "test.yaml:13: -: items[2].kind: a List may not contain a List",
                "test.yaml:16: -: items[3]: a List item must be a mapping with apiVersion and kind, found the string \"just a string\"",
            ]
        );
    }

    #[test]
    fn list_envelopes_are_checked_too() {
        let (resources, problems) = load("apiVersion: v1\nkind: List\nitem: []\n");
        assert!(resources.is_empty());
        assert_eq!(
            messages(&problems),
            [
                "test.yaml:3: -: item: unknown field \"item\" in a List; expected one of apiVersion, kind, metadata, items"
            ]
        );
        let (_, problems) = load("apiVersion: v1\nkind: List\nitems: {a: 1}\n");
        assert_eq!(
            messages(&problems),
            ["test.yaml:3: -: items: expected a sequence, found a mapping"]
        );
        let (resources, problems) = load("apiVersion: v1\nkind: List\nitems:\n");
        assert!(resources.is_empty() && problems.is_empty());
    }

    #[test]
    fn headers_are_checked_before_anything_else() {
        let cases: [(&str, &str); 7] = [
            (
                "kind: GlobalNetworkPolicy\n",
                "test.yaml:1: -: apiVersion: missing apiVersion",
            ),
            (
                "apiVersion: v1\nmetadata: {}\n",
                "test.yaml:1: -: kind: missing kind",
            ),
            (
                "apiVersion: v1\nkind: [a]\n",
                "test.yaml:2: -: kind: expected a string, found a sequence",
            ),
            (
                "apiVersion: projectcalico.org/v1\nkind: GlobalNetworkPolicy\n",
                "test.yaml:1: -: kind: kind GlobalNetworkPolicy is not known in apiVersion projectcalico.org/v1; it needs apiVersion projectcalico.org/v3",
            ),
            (
                "apiVersion: v1\nkind: NetworkPolicy\n",
                "test.yaml:1: -: kind: kind NetworkPolicy is not known in apiVersion v1; it needs apiVersion projectcalico.org/v3 or networking.k8s.io/v1",
            ),
            (
                "- a\n- b\n",
                "test.yaml:1: -: -: a document must be a mapping with apiVersion and kind, found a sequence",
            ),
            (
                "a: [1\n",
                "test.yaml:2: -: -: YAML syntax error: while parsing a flow sequence, expected ',' or ']' (column 1)",
            ),
        ];
        for (text, expected) in cases {
            let (resources, problems) = load(text);
            assert!(resources.is_empty(), "{text}");
            assert_eq!(messages(&problems), [expected], "{text}");
        }
        let (_, problems) = load("apiVersion: example.com/v1\nkind: Widget\n");
        let message = &problems[0].message;
        assert!(message.starts_with("unknown kind Widget in apiVersion example.com/v1; expected one of GlobalNetworkPolicy (projectcalico.org/v3)"), "{message}");
        assert!(message.ends_with("or List (v1)"), "{message}");
    }

    #[test]
    fn decode_problems_name_resource_field_and_line() {
        let text = concat!(
            "apiVersion: projectcalico.org/v3\n", // 1
            "kind: NetworkPolicy\n",              // 2
            "metadata:\n",                        // 3
            "  name: web\n",                      // 4
            "spec:\n",                            // 5
            "  ingress:\n",                       // 6
            "    - action: Allow\n",              // 7
            "      sauce: {nets: []}\n",          // 8
            "  doNotTrack: true\n",               // 9
            "extra: 1\n",                         // 10
        );
        let (resources, problems) = load(text);
        assert!(resources.is_empty());
        assert_eq!(
            messages(&problems),
            [
                "test.yaml:10: NetworkPolicy/web: extra: unknown field \"extra\"; expected one of apiVersion, kind, metadata, spec",
                "test.yaml:8: NetworkPolicy/web: spec.ingress[0].sauce: unknown field \"sauce\"; expected one of action, protocol, notProtocol, icmp, notICMP, ipVersion, source, destination, http, metadata",
            ]
        );
        let (_, problems) =
            load("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: [x]\n  namespace: y\n");
        assert_eq!(
            messages(&problems),
            ["test.yaml:4: Namespace/?: metadata.name: expected a string, found a sequence"]
        );
        let (_, problems) =
            load("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: t}\nstatus: {}\n");
        assert_eq!(problems[0].field, "status");
    }

    #[test]
    fn resources_without_spec_get_the_default_one() {
        let (resources, problems) =
            load("apiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n---\n---\n");
        assert!(problems.is_empty());
        assert_eq!(resources[0].spec, Spec::Namespace(Default::default()));
    }

    #[test]
    fn labels_match_the_problem_labels_of_resources() {
        let text = concat!(
            "apiVersion: projectcalico.org/v3\nkind: NetworkSet\nmetadata: {name: a}\n---\n",
            "apiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata: {name: b, namespace: x}\n---\n",
            "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {name: c, namespace: ignored}\n---\n",
            "apiVersion: v1\nkind: policy\nmetadata: {}\n",
        );
        let (resources, problems) = load(text);
        assert!(problems.is_empty());
        let documents = compose(text, &Limits::default());
        for (resource, document) in resources.iter().zip(&documents) {
            let root = document.as_ref().unwrap().root();
            assert_eq!(
                resource_label(resource.kind(), root),
                resource.problem_label()
            );
        }
        assert_eq!(
            names(&resources),
            [
                "NetworkSet/default/a",
                "WorkloadEndpoint/x/b",
                "HostEndpoint/c",
                "policy/?"
            ]
        );
        let labels: Vec<String> = resources.iter().map(Resource::problem_label).collect();
        assert_eq!(
            labels,
            [
                "NetworkSet/a",
                "WorkloadEndpoint/b",
                "HostEndpoint/c",
                "policy/?"
            ]
        );
    }

    #[test]
    fn header_table_matches_the_kinds() {
        let mut kinds: Vec<Kind> = HEADERS
            .iter()
            .map(|(version, kind)| Kind::from_header(version, kind).unwrap())
            .collect();
        for (kind, (_, word)) in kinds.iter().zip(HEADERS) {
            assert_eq!(kind.name(), word);
        }
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), HEADERS.len());
    }

    #[test]
    fn directories_load_files_in_name_order_and_skip_the_rest() {
        let dir = Scratch::new();
        dir.write("b.yaml", &gnp("b"))
            .write("a.yml", &gnp("a"))
            .write("c.yaml", &format!("{}---\n{}", gnp("c1"), gnp("c2")))
            .write("empty.yaml", "")
            .write(".hidden.yaml", &gnp("hidden"))
            .write("d.yaml~", &gnp("backup"))
            .write(".d.yaml.swp", &gnp("swap"))
            .write("e.yaml.tmp", &gnp("tmp"))
            .write("notes.txt", &gnp("notes"))
            .write("sub.yaml/inner.yaml", &gnp("nested"))
            .write("..data/real.yaml", &gnp("hidden-dir"));
        let (resources, problems) = load_dir(&dir.0, &Limits::default());
        assert!(problems.is_empty(), "{:?}", messages(&problems));
        let names = names(&resources);
        assert_eq!(
            names,
            [
                "GlobalNetworkPolicy/a",
                "GlobalNetworkPolicy/b",
                "GlobalNetworkPolicy/c1",
                "GlobalNetworkPolicy/c2"
            ]
        );
        assert_eq!(resources[1].origin.file, dir.file("b.yaml"));
        assert_eq!(resources[3].origin.line, 8);
    }

    #[test]
    fn file_names_need_not_be_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let dir = Scratch::new();
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9.yaml");
        fs::write(dir.0.join(name), gnp("cafe")).unwrap();
        let (resources, problems) = load_dir(&dir.0, &Limits::default());
        assert!(problems.is_empty());
        assert_eq!(names(&resources), ["GlobalNetworkPolicy/cafe"]);
        assert!(resources[0].origin.file.ends_with("caf\u{fffd}.yaml"));
    }

    #[test]
    fn symlinked_files_are_followed() {
        let dir = Scratch::new();
        dir.write("..2024_01_01/policy.yaml", &gnp("linked"));
        std::os::unix::fs::symlink("..2024_01_01", dir.0.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/policy.yaml", dir.0.join("policy.yaml")).unwrap();
        std::os::unix::fs::symlink("..data/gone.yaml", dir.0.join("dangling.yaml")).unwrap();
        let (resources, problems) = load_dir(&dir.0, &Limits::default());
        assert_eq!(names(&resources), ["GlobalNetworkPolicy/linked"]);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].file, dir.file("dangling.yaml"));
        assert!(
            problems[0].message.starts_with("cannot read file"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn oversized_files_are_refused_before_reading() {
        let dir = Scratch::new();
        dir.write("a.yaml", &gnp("a"));
        // Sparse: a terabyte on paper, nothing on disk. Only the size seen before reading can
        // be reported, since a read stops one byte past the limit.
        let huge = fs::File::create(dir.0.join("huge.yaml")).unwrap();
        huge.set_len(1 << 40).unwrap();
        let (resources, problems) = load_dir(&dir.0, &Limits::default());
        assert_eq!(names(&resources), ["GlobalNetworkPolicy/a"]);
        assert_eq!(
            messages(&problems),
            [format!(
                "{}:0: -: -: file is 1099511627776 bytes, more than the limit of 16777216",
                dir.file("huge.yaml")
            )]
        );
        let small = Limits {
            max_file_bytes: 10,
            ..Limits::default()
        };
        let (_, problems) = load_str("x.yaml", &gnp("a"), &small);
        assert!(problems[0].message.contains("more than the limit of 10"));
    }

    #[test]
    fn every_problem_of_a_directory_is_reported() {
        let dir = Scratch::new();
        dir.write("1.yaml", "kind: Tier\n---\napiVersion: v1\nkind: Pod\n")
            .write("2.yaml", "a: [\n")
            .write(
                "3.yaml",
                &format!("{}  bogus: 1\n---\n{}", gnp("x"), gnp("fine")),
            )
            .write("4.yaml", "a: 1\na: 2\n");
        fs::write(dir.0.join("5.yaml"), b"kind: \xff\n").unwrap();
        let (resources, problems) = load_dir(&dir.0, &Limits::default());
        assert_eq!(names(&resources), ["GlobalNetworkPolicy/fine"]);
        let located: Vec<(String, usize)> = problems
            .iter()
            .map(|p| (p.file.rsplit('/').next().unwrap().to_owned(), p.line))
            .collect();
        let expected = [
            ("1.yaml", 1),
            ("1.yaml", 3),
            ("2.yaml", 2),
            ("3.yaml", 7),
            ("4.yaml", 2),
            ("5.yaml", 0),
        ];
        let expected: Vec<(String, usize)> =
            expected.iter().map(|(f, l)| (f.to_string(), *l)).collect();
        assert_eq!(located, expected, "{:?}", messages(&problems));
        assert!(problems[5].message.contains("not valid UTF-8"));
    }

    #[test]
    fn directory_limits_are_enforced() {
        let missing = Path::new("/nonexistent/portcullis/config");
        let (_, problems) = load_dir(missing, &Limits::default());
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0]
                .to_string()
                .starts_with("/nonexistent/portcullis/config:0: -: -: cannot read directory")
        );

        let dir = Scratch::new();
        for name in ["a", "b", "c"] {
            dir.write(
                &format!("{name}.yaml"),
                &format!(
                    "{}---\n{}",
                    gnp(&format!("{name}1")),
                    gnp(&format!("{name}2"))
                ),
            );
        }
        let few_files = Limits {
            max_files: 2,
            ..Limits::default()
        };
        let (resources, problems) = load_dir(&dir.0, &few_files);
        assert_eq!(resources.len(), 4);
        assert!(
            problems[0]
                .message
                .starts_with("3 YAML files, more than the limit of 2")
        );

        let few_resources = Limits {
            max_resources: 3,
            ..Limits::default()
        };
        let (resources, problems) = load_dir(&dir.0, &few_resources);
        assert_eq!(
            names(&resources),
            [
                "GlobalNetworkPolicy/a1",
                "GlobalNetworkPolicy/a2",
                "GlobalNetworkPolicy/b1"
            ]
        );
        assert_eq!(
            messages(&problems),
            [format!(
                "{}:8: -: -: more than 3 resources in the directory; the rest is not read",
                dir.file("b.yaml")
            )]
        );
    }

    #[test]
    fn yaml_caps_become_problems() {
        let shallow = Limits {
            max_yaml_depth: 1,
            ..Limits::default()
        };
        let (resources, problems) = load_str("deep.yaml", &gnp("a"), &shallow);
        assert!(resources.is_empty());
        assert_eq!(
            messages(&problems),
            [
                "deep.yaml:4: -: -: nesting deeper than 1 levels (aliases counted in full) (column 3)"
            ]
        );
    }

    #[test]
    fn parallel_work_keeps_item_order_and_survives_a_panic() {
        let items: Vec<usize> = (0..100).collect();
        let results = parallel_map(&items, |&i| {
            assert!(i != 42, "deliberate failure");
            i * 2
        });
        let expected: Vec<Option<usize>> =
            items.iter().map(|&i| (i != 42).then_some(i * 2)).collect();
        assert_eq!(results, expected);
    }

    proptest::proptest! {
        /// Policies made of real field names in random arrangements either load or are
        /// reported with a line inside the file; nothing panics.
        #[test]
        fn arbitrary_policies_load_or_are_reported(
            lines in proptest::collection::vec((
                "[ ]{1,8}",
                "(- )?",
                "(ingress|egress|action|protocol|source|destination|nets|ports|selector|order|types|icmp|type|code|http|tier|x)",
                "(: |:)",
                "(Allow|TCP|80|'80'|\"1:2\"|\\[80, http\\]|\\{\\}|\\[\\]|10\\.5|no|~|)",
            ), 0..24)
        ) {
            let body: String = lines
                .iter()
                .map(|(indent, dash, key, colon, value)| format!("{indent}{dash}{key}{colon}{value}\n"))
                .collect();
            let text = format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: p}}\nspec:\n{body}");
            let (resources, problems) = load(&text);
            proptest::prop_assert_eq!(resources.len() + usize::from(!problems.is_empty()), 1);
            let last_line = text.lines().count() + 1;
            for problem in &problems {
                proptest::prop_assert!(problem.line >= 1 && problem.line <= last_line, "{}", problem);
            }
        }
    }

    #[test]
    fn config_file_names() {
        let cases = [
            ("a.yaml", true),
            ("a.yml", true),
            ("a.YAML", false),
            ("a.json", false),
            (".a.yaml", false),
            ("a.yaml~", false),
            ("a.yaml.swp", false),
            ("a.yaml.tmp", false),
            ("yaml", false),
            // Editors' probes, locks and autosaves, and the systemd unit shipped in config/.
            (".#a.yaml", false),
            ("#a.yaml#", false),
            ("4913", false),
            (".a.yaml.swx", false),
            ("portcullis.service", false),
        ];
        for (name, expected) in cases {
            assert_eq!(is_config_file_name(name), expected, "{name}");
        }
    }

    #[test]
    fn the_shipped_example_directory_loads_cleanly() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let (resources, problems) = load_dir(&dir, &Limits::default());
        assert!(problems.is_empty(), "{:?}", messages(&problems));
        assert!(
            resources
                .iter()
                .any(|r| r.kind() == Kind::GlobalNetworkPolicy)
        );
        assert!(
            resources
                .iter()
                .any(|r| r.kind() == Kind::FelixConfiguration)
        );
    }

    /// Ten thousand policies in 100 files. Run with
    /// `cargo test --release --lib load_ten_thousand_policies -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing; run in release mode"]
    fn load_ten_thousand_policies() {
        const FILES: usize = 100;
        const PER_FILE: usize = 100;
        let dir = Scratch::new();
        for f in 0..FILES {
            let text: Vec<String> = (0..PER_FILE)
                .map(|i| benchmark_policy(f * PER_FILE + i))
                .collect();
            dir.write(&format!("p{f:03}.yaml"), &text.join("---\n"));
        }
        let mut fastest = std::time::Duration::MAX;
        for _ in 0..3 {
            let started = std::time::Instant::now();
            let (resources, problems) = load_dir(&dir.0, &Limits::default());
            fastest = fastest.min(started.elapsed());
            assert!(problems.is_empty(), "{:?}", messages(&problems[..1]));
            assert_eq!(resources.len(), FILES * PER_FILE);
        }
        println!(
            "loaded {} policies in {fastest:?} (best of 3)",
            FILES * PER_FILE
        );
        assert!(fastest < std::time::Duration::from_secs(1), "{fastest:?}");
    }

    fn benchmark_policy(i: usize) -> String {
        let tier = if i % 2 == 0 { "security" } else { "default" };
        let lo = 1000 + i % 5000;
        format!(
            "apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata:
  name: {tier}.p{i}
  labels: {{team: t{team}, enabled: no}}
spec:
  tier: {tier}
  order: {i}
  selector: group == 'g{group}' && has(role)
  types: [Ingress, Egress]
  ingress:
    - action: Allow
      protocol: TCP
      source:
        nets: [\"198.51.100.{host}/32\", 192.0.2.0/24]
        selector: role != 'blocked'
      destination:
        ports: [{lo}, \"{lo}:{hi}\", http]
    - action: Deny
      protocol: ICMP
      icmp: {{type: 8, code: 0}}
  egress:
    - action: Deny
      protocol: UDP
      destination:
        notNets: [\"203.0.113.0/24\"]
        ports: [53]
",
            team = i % 7,
            group = i % 50,
            host = i % 256,
            hi = lo + 10,
        )
    }
}
