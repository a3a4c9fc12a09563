//! Debian's packaged kernels, by name: which package a release's `linux-image-amd64` points
//! at, fetched with apt through a private package list (the machine's own sources stay as
//! they are), and unpacked under `target/kernels/<release>/` where virtme-ng finds the image
//! and its modules side by side (`boot/vmlinuz-<release>`, `lib/modules/<release>/`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::util;

/// One Debian release of the matrix and the kernel series it ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Series {
    /// `5.10`, `6.1`, `6.12`: what `--only` takes.
    pub series: &'static str,
    /// The Debian release (suite) whose `linux-image-amd64` depends on it.
    pub suite: &'static str,
    pub debian: &'static str,
}

/// The kernels users run, oldest first: Debian 11, 12 and 13.
pub const MATRIX: &[Series] = &[
    Series { series: "5.10", suite: "bullseye", debian: "Debian 11" },
    Series { series: "6.1", suite: "bookworm", debian: "Debian 12" },
    Series { series: "6.12", suite: "trixie", debian: "Debian 13" },
];

/// Module directories a test guest never loads from (graphics, sound, real network cards,
/// USB ...), left out of the unpacked tree: about half of its 400 MB.
const PRUNED_MODULES: &[&str] = &[
    "kernel/sound",
    "kernel/drivers/gpu",
    "kernel/drivers/media",
    "kernel/drivers/infiniband",
    "kernel/drivers/net/wireless",
    "kernel/drivers/net/ethernet",
    "kernel/drivers/iio",
    "kernel/drivers/usb",
    "kernel/drivers/staging",
    "kernel/drivers/bluetooth",
    "kernel/drivers/hwmon",
    "kernel/drivers/mtd",
    "kernel/drivers/isdn",
];

/// apt with a package list of its own under `dir`: the three releases' `main` from the
/// archive the machine already uses.
pub struct PrivateApt {
    dir: PathBuf,
}

impl PrivateApt {
    pub fn new(dir: &Path) -> Result<PrivateApt> {
        std::fs::create_dir_all(dir.join("lists/partial")).with_context(|| format!("creating {}", dir.display()))?;
        let mirror = machine_mirror()?;
        let sources: String = MATRIX.iter().map(|s| format!("deb {mirror} {} main\n", s.suite)).collect();
        std::fs::write(dir.join("sources.list"), sources)?;
        Ok(PrivateApt { dir: dir.to_path_buf() })
    }

    fn options(&self) -> Vec<String> {
        vec![
            "-o".into(),
            format!("Dir::Etc::sourcelist={}", self.dir.join("sources.list").display()),
            "-o".into(),
            "Dir::Etc::sourceparts=-".into(),
            "-o".into(),
            format!("Dir::State::Lists={}", self.dir.join("lists").display()),
        ]
    }

    /// `apt-get update` of the private lists, at most once a day.
    pub fn update(&self) -> Result<()> {
        let stamp = self.dir.join("updated");
        let fresh = std::fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() < 24 * 3600));
        if fresh {
            return Ok(());
        }
        let mut cmd = Command::new("apt-get");
        cmd.args(self.options()).args(["-q", "update"]);
        util::output(&mut cmd).context("updating the kernel matrix's private package lists")?;
        std::fs::write(stamp, "")?;
        Ok(())
    }

    /// The kernel package that `series`' release currently ships: what its
    /// `linux-image-amd64` depends on (`linux-image-6.1.0-50-amd64`).
    pub fn resolve(&self, series: &Series) -> Result<String> {
        let mut cmd = Command::new("apt-cache");
        cmd.args(self.options()).args(["show", "linux-image-amd64"]);
        let text = util::output(&mut cmd)?;
        image_for_series(&text, series.series).with_context(|| {
            format!("no linux-image-amd64 of {} ({}) depends on a {} kernel", series.suite, series.debian, series.series)
        })
    }

    /// Downloads `package` and unpacks it into `root` (unless already there), without the
    /// module trees a guest never loads. Returns the kernel release (`6.1.0-50-amd64`).
    pub fn unpack(&self, package: &str, root: &Path) -> Result<Unpacked> {
        let release = package.strip_prefix("linux-image-").context("not a linux-image package")?.to_string();
        let dir = root.join(&release);
        let unpacked = Unpacked { image: dir.join("boot").join(format!("vmlinuz-{release}")), release, dir };
        if unpacked.dir.join(".complete").exists() {
            return Ok(unpacked);
        }
        let download = root.join("download");
        std::fs::create_dir_all(&download)?;
        let mut get = Command::new("apt-get");
        get.current_dir(&download).args(self.options()).args(["-q", "download", package]);
        util::output(&mut get).with_context(|| format!("downloading {package}"))?;
        let deb = std::fs::read_dir(&download)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb")))
            .with_context(|| format!("apt-get download {package} left no .deb in {}", download.display()))?;
        let _ = std::fs::remove_dir_all(&unpacked.dir);
        std::fs::create_dir_all(&unpacked.dir)?;
        let excludes: String = PRUNED_MODULES.iter().map(|m| format!(" --exclude='*/{m}'")).collect();
        let mut tar = Command::new("sh");
        tar.arg("-c")
            .arg(format!("dpkg-deb --fsys-tarfile \"$1\" | tar -x -C \"$2\"{excludes}"))
            .arg("sh")
            .arg(&deb)
            .arg(&unpacked.dir);
        util::run(&mut tar).with_context(|| format!("unpacking {}", deb.display()))?;
        std::fs::remove_file(&deb)?;
        if !unpacked.image.exists() {
            bail!("{package} has no {}", unpacked.image.display());
        }
        std::fs::write(unpacked.dir.join(".complete"), "")?;
        Ok(unpacked)
    }
}

/// An unpacked kernel package.
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// `6.1.0-50-amd64`: its `uname -r`.
    pub release: String,
    pub dir: PathBuf,
    pub image: PathBuf,
}

/// The archive the machine's own sources name (deb822 `URIs:` or a one-line `deb URL`).
fn machine_mirror() -> Result<String> {
    for path in ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"] {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Some(uri) = first_mirror(&text)
        {
            return Ok(uri);
        }
    }
    bail!("no Debian archive in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list")
}

/// The first archive URL of a sources file, deb822 or one-line style.
pub fn first_mirror(text: &str) -> Option<String> {
    text.lines().map(str::trim).find_map(|l| {
        if let Some(uri) = l.strip_prefix("URIs:") {
            return uri.split_whitespace().next().map(str::to_string);
        }
        let mut words = l.split_whitespace();
        (words.next() == Some("deb")).then(|| words.find(|w| w.contains("://"))).flatten().map(str::to_string)
    })
}

/// From `apt-cache show linux-image-amd64` (one stanza per version), the image package of the
/// highest version whose `Depends` names a kernel of `series` (`6.1` matches
/// `linux-image-6.1.0-50-amd64`, not `linux-image-6.12...`).
pub fn image_for_series(apt_cache_show: &str, series: &str) -> Option<String> {
    let prefix = format!("linux-image-{series}.");
    let mut best: Option<(Vec<u64>, String)> = None;
    for stanza in apt_cache_show.split("\n\n") {
        let field = |name: &str| stanza.lines().find_map(|l| l.strip_prefix(name).map(str::trim));
        let (Some(version), Some(depends)) = (field("Version:"), field("Depends:")) else { continue };
        let Some(image) = depends
            .split(',')
            .map(|d| d.split_whitespace().next().unwrap_or(""))
            .find(|d| d.starts_with(&prefix) && d.ends_with("-amd64"))
        else {
            continue;
        };
        let key: Vec<u64> = version.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, image.to_string()));
        }
    }
    best.map(|(_, image)| image)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = "Package: linux-image-amd64\nVersion: 6.12.117-1\nDepends: linux-image-6.12.117+deb13-amd64 (= 6.12.117-1)\n\n\
                        Package: linux-image-amd64\nVersion: 6.1.176-1\nDepends: linux-image-6.1.0-50-amd64 (= 6.1.176-1)\n\n\
                        Package: linux-image-amd64\nVersion: 6.1.170-1\nDepends: linux-image-6.1.0-47-amd64 (= 6.1.170-1)\n\n\
                        Package: linux-image-amd64\nVersion: 5.10.223-1\nDepends: linux-image-5.10.0-32-amd64 (= 5.10.223-1)\n";

    #[test]
    fn each_series_resolves_to_its_newest_image() {
        assert_eq!(image_for_series(SHOW, "6.1").as_deref(), Some("linux-image-6.1.0-50-amd64"));
        assert_eq!(image_for_series(SHOW, "6.12").as_deref(), Some("linux-image-6.12.117+deb13-amd64"));
        assert_eq!(image_for_series(SHOW, "5.10").as_deref(), Some("linux-image-5.10.0-32-amd64"));
        assert_eq!(image_for_series(SHOW, "4.19"), None);
    }

    #[test]
    fn the_mirror_comes_from_either_sources_style() {
        let deb822 = "Types: deb\n# comment\nURIs: http://deb.example/debian\nSuites: bookworm\n";
        assert_eq!(first_mirror(deb822).as_deref(), Some("http://deb.example/debian"));
        let one_line = "# x\ndeb [arch=amd64] http://deb.example/debian bookworm main\n";
        assert_eq!(first_mirror(one_line).as_deref(), Some("http://deb.example/debian"));
        assert_eq!(first_mirror("deb-src http://x/ y main\n"), None);
    }
}
