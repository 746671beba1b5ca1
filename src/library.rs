//! The built-in template library, declared in `templates-tree/`.
//!
//! Each `*.toml` file there declares one template (name, parent, OS, software,
//! and how to build it). [`build`] creates the missing ones in parent-first
//! order and skips the ones that exist, so it is idempotent. Build kinds:
//! - `blank`: the root of the tree (an empty qcow2).
//! - `script`: a script writes an image file (e.g. `scripts/build-tiny-guest.sh`);
//!   it is then imported through the same inspection as any upload.
//! - `files`: a child layer = the parent's layer plus files copied into its
//!   ext4 root file system, built offline without mounting anything: the
//!   parent is expanded to a scratch raw image, `debugfs -w` writes the files
//!   into the root partition, and a safe `qemu-img rebase` of an overlay on
//!   that copy onto the parent keeps only the clusters that differ, so the
//!   child costs only its files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use uuid::Uuid;

use crate::db::{self, Pool};
use crate::images::{ImageFormat, partition};
use crate::storage::{self, Storage};
use crate::templates::{self, ImportLimits, ImportParams, Template, TemplateState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    pub name: String,
    pub parent: Option<String>,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub software: Vec<String>,
    #[serde(default)]
    pub description: String,
    pub build: Build,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Build {
    Blank {
        #[serde(default)]
        virtual_size: Option<String>,
    },
    Script {
        script: String,
        #[serde(default)]
        args: Vec<String>,
        format: String,
    },
    Files {
        files_dir: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("{path}: {message}")]
    Definition { path: String, message: String },
    #[error("template {0:?}: parent {1:?} is not declared")]
    UnknownParent(String, String),
    #[error("the tree has a cycle or more than one root")]
    BadTree,
    #[error("building {0:?} failed: {1}")]
    Build(String, String),
    #[error(transparent)]
    Template(#[from] templates::TemplateError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads every definition in `dir`, parents before children.
pub fn load(dir: &Path) -> Result<Vec<Definition>, LibraryError> {
    let mut defs = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path)?;
        let def: Definition = toml::from_str(&text).map_err(|e| LibraryError::Definition {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        defs.push(def);
    }
    order(defs)
}

/// Topological order, parents first; errors on unknown parents and cycles.
fn order(defs: Vec<Definition>) -> Result<Vec<Definition>, LibraryError> {
    let names: HashMap<String, usize> = defs
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.clone(), i))
        .collect();
    for d in &defs {
        if let Some(p) = &d.parent
            && !names.contains_key(p)
        {
            return Err(LibraryError::UnknownParent(d.name.clone(), p.clone()));
        }
    }
    let mut placed: Vec<bool> = vec![false; defs.len()];
    let mut order_idx = Vec::with_capacity(defs.len());
    while order_idx.len() < defs.len() {
        let before = order_idx.len();
        for (i, d) in defs.iter().enumerate() {
            if placed[i] {
                continue;
            }
            let ready = d.parent.as_ref().is_none_or(|p| placed[names[p]]);
            if ready {
                placed[i] = true;
                order_idx.push(i);
            }
        }
        if order_idx.len() == before {
            return Err(LibraryError::BadTree);
        }
    }
    let mut slots: Vec<Option<Definition>> = defs.into_iter().map(Some).collect();
    Ok(order_idx
        .into_iter()
        .filter_map(|i| slots[i].take())
        .collect())
}

/// Builds the missing templates of the tree in `dir`; returns a line per template.
pub async fn build(
    pool: &Pool,
    storage: &Storage,
    limits: ImportLimits,
    dir: &Path,
) -> Result<Vec<String>, LibraryError> {
    let dir = std::fs::canonicalize(dir)?;
    let repo_root = dir.parent().unwrap_or(&dir).to_path_buf();
    let defs = load(&dir)?;
    let mut report = Vec::new();
    for def in defs {
        if let Some(t) = templates::find_by_name(pool, &def.name).await? {
            report.push(format!("{}: exists ({})", def.name, t.id));
            continue;
        }
        let t = match &def.build {
            Build::Blank { .. } => {
                if def.parent.is_some() {
                    return Err(LibraryError::Build(
                        def.name.clone(),
                        "a blank template must be the root".into(),
                    ));
                }
                templates::ensure_root(pool, storage).await?
            }
            Build::Script {
                script,
                args,
                format,
            } => {
                build_script(
                    pool, storage, limits, &repo_root, &def, script, args, format,
                )
                .await?
            }
            Build::Files { files_dir } => build_files(pool, storage, &dir, &def, files_dir).await?,
        };
        report.push(format!(
            "{}: built ({}, {} bytes)",
            def.name, t.id, t.size_bytes
        ));
    }
    Ok(report)
}

async fn parent_of(pool: &Pool, def: &Definition) -> Result<Option<Template>, LibraryError> {
    match &def.parent {
        None => Ok(None),
        Some(p) => Ok(Some(templates::find_by_name(pool, p).await?.ok_or_else(
            || LibraryError::UnknownParent(def.name.clone(), p.clone()),
        )?)),
    }
}

#[allow(clippy::too_many_arguments)]
async fn build_script(
    pool: &Pool,
    storage: &Storage,
    limits: ImportLimits,
    repo_root: &Path,
    def: &Definition,
    script: &str,
    args: &[String],
    format: &str,
) -> Result<Template, LibraryError> {
    let format: ImageFormat = format
        .parse()
        .map_err(|_| LibraryError::Build(def.name.clone(), format!("unknown format {format:?}")))?;
    let parent = parent_of(pool, def).await?;
    let out = storage.upload_path();
    let status = tokio::process::Command::new(repo_root.join(script))
        .arg(&out)
        .args(args)
        .current_dir(repo_root)
        .status()
        .await?;
    if !status.success() {
        let _ = storage::remove_file_if_exists(&out);
        return Err(LibraryError::Build(
            def.name.clone(),
            format!("{script} exited with {status}"),
        ));
    }
    let params = ImportParams {
        name: def.name.clone(),
        format,
        os: def.os.clone(),
        software: def.software.clone(),
        // Depth-1 images hang under the root; deeper ones under their parent.
        parent_id: parent.filter(|p| p.parent_id.is_some()).map(|p| p.id),
    };
    let res = templates::import_local_file(pool, storage, limits, params, None, &out).await;
    let _ = storage::remove_file_if_exists(&out);
    Ok(res?)
}

/// A step of building a files template that failed.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("{what}: {source}")]
    Spawn {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{what}: {stderr}")]
    Failed { what: &'static str, stderr: String },
    #[error("the parent image has no Linux (0x83) partition")]
    NoLinuxPartition,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

async fn run(cmd: &mut tokio::process::Command, what: &'static str) -> Result<(), StepError> {
    let out = cmd
        .output()
        .await
        .map_err(|source| StepError::Spawn { what, source })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(StepError::Failed {
            what,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// debugfs commands that recreate `files` (relative to `root`) inside the image.
fn debugfs_script(root: &Path) -> Result<String, std::io::Error> {
    fn walk(dir: &Path, root: &Path, out: &mut String) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path.strip_prefix(root).map_err(std::io::Error::other)?;
            let rel = rel.to_string_lossy();
            if rel.contains(['"', '\n', ' ']) {
                return Err(std::io::Error::other(format!(
                    "unsupported file name {rel:?}"
                )));
            }
            if e.file_type()?.is_dir() {
                out.push_str(&format!("mkdir /{rel}\n"));
                walk(&path, root, out)?;
            } else {
                out.push_str(&format!("rm /{rel}\nwrite {} /{rel}\n", path.display()));
            }
        }
        Ok(())
    }
    let mut s = String::new();
    walk(root, root, &mut s)?;
    Ok(s)
}

async fn build_files(
    pool: &Pool,
    storage: &Storage,
    dir: &Path,
    def: &Definition,
    files_dir: &str,
) -> Result<Template, LibraryError> {
    let fail = |m: String| LibraryError::Build(def.name.clone(), m);
    let parent = parent_of(pool, def)
        .await?
        .ok_or_else(|| fail("a files template needs a parent".into()))?;
    if parent.state != TemplateState::Ready || parent.parent_id.is_none() {
        return Err(fail("the parent must be a ready, bootable template".into()));
    }
    let software = templates::normalise_software(&def.software)?;
    if !templates::is_strict_superset(&software, &parent.software) {
        return Err(fail("software must strictly contain the parent's".into()));
    }
    let files = std::fs::canonicalize(dir.join(files_dir))?;
    if !files.starts_with(dir) {
        return Err(fail(
            "files_dir must be inside the templates-tree directory".into(),
        ));
    }
    let parent_path = storage.template_path(parent.id);
    let scratch = storage.upload_path().with_extension("raw");
    let id = Uuid::new_v4();
    let child_path = storage.template_path(id);
    let result = async {
        run(
            tokio::process::Command::new("qemu-img")
                .args(["convert", "-f", "qcow2", "-O", "raw"])
                .arg(&parent_path)
                .arg(&scratch),
            "expand parent",
        )
        .await?;
        let mut mbr = vec![0u8; 512];
        {
            use std::io::Read;
            std::fs::File::open(&scratch).and_then(|mut f| f.read_exact(&mut mbr))?;
        }
        let offset = partition::linux_partition_offset(&mbr).ok_or(StepError::NoLinuxPartition)?;
        let script = debugfs_script(&files)?;
        let script_path = scratch.with_extension("debugfs");
        std::fs::write(&script_path, script)?;
        let r = run(
            tokio::process::Command::new("debugfs")
                .arg("-w")
                .arg("-f")
                .arg(&script_path)
                .arg(format!("{}?offset={offset}", scratch.display())),
            "write files",
        )
        .await;
        let _ = std::fs::remove_file(&script_path);
        r?;
        // An overlay on the modified copy, then a *safe* rebase onto the
        // parent: qemu-img compares both backings and keeps only the clusters
        // that differ, so the child layer holds just the added files.
        run(
            tokio::process::Command::new("qemu-img")
                .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
                .arg(&scratch)
                .arg(&child_path),
            "create child layer",
        )
        .await?;
        run(
            tokio::process::Command::new("qemu-img")
                .args(["rebase", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
                .arg(&parent_path)
                .arg(&child_path),
            "rebase child layer onto its parent",
        )
        .await?;
        templates::seal_file(&child_path)?;
        Ok::<(), StepError>(())
    }
    .await;
    let _ = storage::remove_file_if_exists(&scratch);
    if let Err(m) = result {
        let _ = storage::remove_file_if_exists(&child_path);
        return Err(fail(m.to_string()));
    }
    let t = Template {
        id,
        name: def.name.clone(),
        parent_id: Some(parent.id),
        os: parent.os.clone(),
        software,
        state: TemplateState::Ready,
        size_bytes: std::fs::metadata(&child_path)?.len(),
        virtual_size_bytes: parent.virtual_size_bytes,
        depth: parent.depth + 1,
        created_by: None,
        created_at: db::now(),
    };
    if let Err(e) = templates::insert(pool, &t).await {
        let _ = storage::remove_file_if_exists(&child_path);
        return Err(e.into());
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, parent: Option<&str>) -> Definition {
        Definition {
            name: name.into(),
            parent: parent.map(Into::into),
            os: String::new(),
            software: vec![],
            description: String::new(),
            build: Build::Blank { virtual_size: None },
        }
    }

    #[test]
    fn orders_parents_first_and_rejects_bad_trees() {
        let defs = vec![def("c", Some("b")), def("b", Some("a")), def("a", None)];
        let names: Vec<String> = order(defs)
            .expect("order")
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(matches!(
            order(vec![def("x", Some("nope"))]),
            Err(LibraryError::UnknownParent(..))
        ));
        assert!(matches!(
            order(vec![def("x", Some("y")), def("y", Some("x"))]),
            Err(LibraryError::BadTree)
        ));
    }
}
