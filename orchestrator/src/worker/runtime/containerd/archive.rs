//! Builds an OCI image archive (what `ctr images import` reads) from files on this host, byte for byte the same
//! for the same files: one uncompressed layer with sorted entries, zero times and owners, and no timestamps in
//! the config. `dirigent image build` uses it for the `trace-function` image: the binary and the shared
//! libraries it loads (found with `ldd`), so no registry and no static build is needed.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};

/// The name `dirigent image` gives the trace-function image.
pub const TRACE_FUNCTION_IMAGE: &str = "dirigent.local/trace-function:latest";

const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A file of the image: read from `source`, stored at `path` (absolute, inside the image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    /// Where it is read from (symbolic links are followed).
    pub source: PathBuf,
    /// Where it is in the image.
    pub path: String,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The image's name (`io.containerd.image.name`).
    pub name: String,
    /// The manifest's digest.
    pub manifest: String,
    /// How many files the layer holds.
    pub files: usize,
}

/// The image's files for `binary`: the binary at `/<its file name>`, then each shared library and the loader it
/// needs at the path `ldd` names.
pub fn with_libraries(binary: &Path) -> io::Result<Vec<ImageFile>> {
    let name = binary.file_name().and_then(|n| n.to_str()).ok_or_else(|| io::Error::other("no file name"))?;
    let mut files = vec![ImageFile { source: binary.to_path_buf(), path: format!("/{name}") }];
    let output = std::process::Command::new("ldd").arg(binary).output()?;
    for library in libraries(&String::from_utf8_lossy(&output.stdout)) {
        files.push(ImageFile { source: library.clone().into(), path: library });
    }
    Ok(files)
}

/// The absolute paths in `ldd` output (none for a static binary).
fn libraries(ldd: &str) -> BTreeSet<String> {
    ldd.lines()
        .filter_map(|line| line.split_whitespace().find(|word| word.starts_with('/')))
        .map(str::to_owned)
        .collect()
}

/// Writes the archive of image `name` with `files` and command `cmd` to `out`.
pub fn write(out: &Path, name: &str, files: &[ImageFile], cmd: &[String]) -> io::Result<Built> {
    let layer = layer(files)?;
    let layer_digest = digest(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Cmd": cmd,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": { "mediaType": CONFIG_TYPE, "digest": digest(&config), "size": config.len() },
        "layers": [{ "mediaType": LAYER_TYPE, "digest": layer_digest, "size": layer.len() }],
    }))?;
    let manifest_digest = digest(&manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MANIFEST_TYPE,
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": { "io.containerd.image.name": name, "org.opencontainers.image.ref.name": name },
        }],
    }))?;
    let mut archive = tar::Builder::new(Vec::new());
    directory(&mut archive, "blobs/")?;
    directory(&mut archive, "blobs/sha256/")?;
    let mut blobs = [(&config, digest(&config)), (&layer, layer_digest), (&manifest, manifest_digest.clone())];
    blobs.sort_by(|a, b| a.1.cmp(&b.1));
    for (blob, digest) in blobs {
        regular(&mut archive, &format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")), blob, 0o644)?;
    }
    regular(&mut archive, "index.json", &index, 0o644)?;
    regular(&mut archive, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644)?;
    std::fs::File::create(out)?.write_all(&archive.into_inner()?)?;
    Ok(Built { name: name.to_owned(), manifest: manifest_digest, files: files.len() })
}

/// The layer tar: every parent folder, then the files, in path order.
fn layer(files: &[ImageFile]) -> io::Result<Vec<u8>> {
    let mut entries: Vec<(String, Option<&ImageFile>)> = Vec::new();
    let mut folders = BTreeSet::new();
    for file in files {
        let path = file.path.trim_start_matches('/');
        let mut parent = Path::new(path).parent();
        while let Some(folder) = parent.filter(|p| !p.as_os_str().is_empty()) {
            folders.insert(format!("{}/", folder.display()));
            parent = folder.parent();
        }
        entries.push((path.to_owned(), Some(file)));
    }
    entries.extend(folders.into_iter().map(|folder| (folder, None)));
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|a, b| a.0 == b.0);
    let mut tar = tar::Builder::new(Vec::new());
    for (path, file) in entries {
        match file {
            None => directory(&mut tar, &path)?,
            Some(file) => {
                let data = std::fs::read(&file.source)
                    .map_err(|err| io::Error::new(err.kind(), format!("reading {}: {err}", file.source.display())))?;
                regular(&mut tar, &path, &data, executable_mode(&file.source))?;
            }
        }
    }
    tar.into_inner()
}

fn executable_mode(source: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(source).map(|m| m.permissions().mode()).unwrap_or(0o644);
    if mode & 0o111 != 0 { 0o755 } else { 0o644 }
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn directory(tar: &mut tar::Builder<Vec<u8>>, path: &str) -> io::Result<()> {
    tar.append_data(&mut header(tar::EntryType::Directory, 0, 0o755), path, io::empty())
}

fn regular(tar: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) -> io::Result<()> {
    tar.append_data(&mut header(tar::EntryType::Regular, data.len() as u64, mode), path, data)
}

fn digest(blob: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(blob))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_libraries_ldd_names() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t\
                   /lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        let found: Vec<String> = libraries(ldd).into_iter().collect();
        assert_eq!(found, ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]);
        assert!(libraries("\tnot a dynamic executable\n").is_empty());
    }

    #[test]
    fn the_same_files_give_the_same_archive_with_every_folder() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("f");
        std::fs::write(&source, b"payload").unwrap();
        let files = [ImageFile { source: source.clone(), path: "/usr/lib/x/f".into() }];
        let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
        let built = write(&a, "example.local/f:1", &files, &["/usr/lib/x/f".into()]).unwrap();
        write(&b, "example.local/f:1", &files, &["/usr/lib/x/f".into()]).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "reproducible");
        assert!(built.manifest.starts_with("sha256:") && built.files == 1);

        let layer = layer(&files).unwrap();
        let mut archive = tar::Archive::new(layer.as_slice());
        let paths: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(paths, ["usr/", "usr/lib/", "usr/lib/x/", "usr/lib/x/f"]);
    }
}
