//! The configuration directory as typed resources.
//!
//! `load` reads every `*.yaml`/`*.yml` file of a directory (multi-document files and
//! `kind: List` allowed) into [`Resource`]s, each knowing where it came from; `validate`
//! checks them one by one and across the directory. Both collect *every* problem rather
//! than stopping at the first, and a directory is used only when it has none: a
//! [`Model`] is a directory that loaded and validated completely.

pub mod load;
pub mod resources;
pub mod settings;
pub mod validate;
pub mod yaml;

mod de;

use std::fmt;
use std::path::Path;

pub use resources::{Kind, Metadata, Spec};
pub use settings::Settings;
pub use yaml::FieldLines;

/// Where a resource came from: the file as named to the user, and the line its document
/// (or `kind: List` item) starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

/// One decoded resource of the directory.
#[derive(Debug, Clone)]
pub struct Resource {
    pub origin: Origin,
    pub metadata: Metadata,
    pub spec: Spec,
    /// Line of every field of this resource, for problem messages.
    pub fields: FieldLines,
}

impl Resource {
    pub fn kind(&self) -> Kind {
        self.spec.kind()
    }

    /// `metadata.name`, or the empty string when it is missing (validation reports that).
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or("")
    }

    /// The namespace of a namespaced kind (`default` when unset); empty for global kinds.
    pub fn namespace(&self) -> &str {
        if self.kind().is_namespaced() {
            match self.metadata.namespace.as_deref() {
                Some(ns) if !ns.is_empty() => ns,
                _ => "default",
            }
        } else {
            ""
        }
    }

    /// How problem lines name this resource: `KIND/NAME` exactly, as the `validate` output
    /// format `FILE:LINE: KIND/NAME: FIELD: message` says; the namespace is not part of it
    /// (the file and line already tell two same-named resources apart).
    pub fn problem_label(&self) -> String {
        let name = if self.name().is_empty() {
            "?"
        } else {
            self.name()
        };
        format!("{}/{}", self.kind().name(), name)
    }

    /// How traces and cross-references name this resource: `KIND/NAME`, or
    /// `KIND/NAMESPACE/NAME` for namespaced kinds.
    pub fn display_name(&self) -> String {
        let name = if self.name().is_empty() {
            "?"
        } else {
            self.name()
        };
        if self.kind().is_namespaced() {
            format!("{}/{}/{}", self.kind().name(), self.namespace(), name)
        } else {
            format!("{}/{}", self.kind().name(), name)
        }
    }

    /// Line of a field given as a path such as `spec.ingress[0].source.nets[1]`; the line
    /// of the deepest part of the path that exists, else the resource's own line.
    pub fn line_of(&self, field_path: &str) -> usize {
        self.fields.line(field_path).unwrap_or(self.origin.line)
    }

    /// A problem located at `field_path` of this resource.
    pub fn problem(&self, field_path: &str, message: impl Into<String>) -> Problem {
        Problem {
            file: self.origin.file.clone(),
            line: self.line_of(field_path),
            resource: self.problem_label(),
            field: field_path.to_owned(),
            message: message.into(),
        }
    }
}

/// One thing wrong with the directory, printed as `FILE:LINE: KIND/NAME: FIELD: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    /// `KIND/NAME` (the namespace is not part of it); `-` when the problem is not inside a resource
    /// (unreadable file, YAML syntax error, document with no kind).
    pub resource: String,
    /// Field path such as `spec.ingress[0].protocol`; `-` when the problem is not about one field.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}: {}",
            self.file, self.line, self.resource, self.field, self.message
        )
    }
}

/// Caps against hostile or runaway input (SPEC §A4). Exceeding one is a problem, not a crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_files: usize,
    pub max_resources: usize,
    pub max_rules_per_policy: usize,
    pub max_selector_len: usize,
    pub max_yaml_depth: usize,
    /// Total nodes one document may expand to, aliases included (stops alias bombs).
    pub max_yaml_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 16 * 1024 * 1024,
            max_files: 10_000,
            max_resources: 100_000,
            max_rules_per_policy: 10_000,
            max_selector_len: 1024,
            max_yaml_depth: 64,
            max_yaml_nodes: 2_000_000,
        }
    }
}

/// A directory that loaded and validated with no problem, plus its gateway settings.
#[derive(Debug, Clone)]
pub struct Model {
    /// Resources in a stable order: files sorted by name, then document order.
    pub resources: Vec<Resource>,
    pub settings: Settings,
}

/// Load and validate `dir`: all or nothing.
pub fn load_model(dir: &Path, limits: &Limits) -> Result<Model, Vec<Problem>> {
    let (resources, problems) = load::load_dir(dir, limits);
    let mut model = validated(resources, problems, limits)?;
    model.settings.apply_env(std::env::vars())?;
    Ok(model)
}

/// Load and validate one YAML text, named `file_name` in problems: all or nothing, like
/// [`load_model`] but with no environment overrides (fixed inputs: benchmarks, tests).
pub fn load_model_str(file_name: &str, text: &str, limits: &Limits) -> Result<Model, Vec<Problem>> {
    let (resources, problems) = load::load_str(file_name, text, limits);
    validated(resources, problems, limits)
}

fn validated(
    resources: Vec<Resource>,
    mut problems: Vec<Problem>,
    limits: &Limits,
) -> Result<Model, Vec<Problem>> {
    problems.extend(validate::validate(&resources, limits));
    if !problems.is_empty() {
        return Err(problems);
    }
    let settings = settings::Settings::from_resources(&resources)?;
    Ok(Model {
        resources,
        settings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_loads_all_or_nothing_with_its_settings() {
        let limits = Limits::default();
        let good = "apiVersion: portcullis/v1\nkind: GatewayConfiguration\n\
                    metadata: { name: default }\nspec:\n  conntrackMaxEntries: 1024\n";
        let model = load_model_str("good.yaml", good, &limits).unwrap();
        assert_eq!(model.resources.len(), 1);
        assert_eq!(model.settings.conntrack_max_entries, 1024);

        // One invalid rule refuses the whole text, named by file, resource and field.
        let bad = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
                   metadata: { name: p }\nspec:\n  ingress:\n    - action: Maybe\n";
        let problems = load_model_str("bad.yaml", bad, &limits).unwrap_err();
        assert!(
            problems.iter().any(|p| p.file == "bad.yaml"
                && p.resource == "GlobalNetworkPolicy/p"
                && p.field.contains("action")),
            "{problems:#?}"
        );
    }
}
