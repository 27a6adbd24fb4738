//! `crio man` and `crio completion`: the manual pages crio(8) and
//! crio.conf(5) and the shell completions, generated from the command line's
//! definition and from the configuration model (the keys, values and
//! descriptions `crio config` prints), so none of them is written twice.

use std::io::Write;

use clap::CommandFactory;
use roff::{Roff, bold, italic, roman};

use crate::cli::Cli;

/// The manual pages `crio man` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Page {
    /// crio(8): the daemon and its command line.
    Crio,
    /// crio.conf(5): every table and key with its type and default.
    #[value(name = "crio.conf")]
    CrioConf,
}

/// The page in roff, ready for `man -l`.
pub fn man(page: Page) -> String {
    match page {
        Page::Crio => crio_page(),
        Page::CrioConf => conf_page(&crio_config::Config::default()),
    }
}

/// The completion script of `crio` for `shell`.
pub fn completion(shell: clap_complete::Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "crio", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn crio_page() -> String {
    let man = clap_mangen::Man::new(Cli::command())
        .section("8")
        .manual("crio-rs");
    let mut out = Vec::new();
    let _ = man.render_title(&mut out);
    let _ = man.render_name_section(&mut out);
    let _ = man.render_synopsis_section(&mut out);
    let _ = man.render_description_section(&mut out);
    let _ = man.render_options_section(&mut out);
    let _ = man.render_subcommands_section(&mut out);
    let mut extra = Roff::new();
    extra
        .control("SH", ["DESCRIPTION OF OPERATION"])
        .text([roman(
            "crio serves the Kubernetes CRI on a unix socket. It starts one \
             shim per pod; the shims and the containers keep running when the \
             daemon stops, restarts or is upgraded, and the next daemon adopts them. \
             Flags override the configuration files, which the drop-in files \
             override in lexical order.",
        )]);
    files_section(&mut extra);
    extra.control("SH", ["SEE ALSO"]).text([
        bold("crio.conf"),
        roman("(5), "),
        bold("crioctl"),
        roman("(1)"),
    ]);
    let _ = out.write_all(extra.render().as_bytes());
    let _ = man.render_version_section(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn files_section(roff: &mut Roff) {
    let defaults = crio_config::Config::default();
    roff.control("SH", ["FILES"]);
    let files = [
        (
            crio_config::DEFAULT_CONFIG_FILE.to_string(),
            "main configuration file",
        ),
        (
            format!("{}/", crio_config::DEFAULT_CONFIG_DIR),
            "drop-in configuration files",
        ),
        (defaults.api.listen.display().to_string(), "the CRI socket"),
        (
            defaults.root.display().to_string(),
            "persistent state: images, layers, records",
        ),
        (
            defaults.runroot.display().to_string(),
            "volatile state: bundles, shim sockets",
        ),
    ];
    for (path, what) in files {
        roff.control("TP", [] as [&str; 0])
            .text([italic(path)])
            .text([roman(what)]);
    }
}

fn conf_page(config: &crio_config::Config) -> String {
    let mut roff = Roff::new();
    let source = format!("crio-rs {}", env!("CARGO_PKG_VERSION"));
    roff.control("TH", ["crio.conf", "5", "", &source, "crio-rs"])
        .control("SH", ["NAME"])
        .text([roman("crio.conf - configuration of the crio-rs CRI daemon")])
        .control("SH", ["SYNOPSIS"])
        .text([italic(crio_config::DEFAULT_CONFIG_FILE)])
        .control("br", [] as [&str; 0])
        .text([italic(format!(
            "{}/*.conf",
            crio_config::DEFAULT_CONFIG_DIR
        ))])
        .control("SH", ["DESCRIPTION"])
        .text([roman(
            "A TOML file with CRI-O's tables and keys. The drop-in files are read \
             after it in lexical order, each overriding the keys it sets; command \
             line flags override both. Unknown keys are warnings; wrong types and \
             impossible values stop the daemon, naming the file and the key. \
             `crio config --default` prints the defaults below as a commented file, \
             and `crio config` the effective configuration.",
        )]);
    for entry in crio_config::entries(config) {
        match &entry.value {
            None => {
                roff.control("SH", [format!("[{}]", entry.path).as_str()]);
                if let Some(doc) = entry.doc {
                    roff.text([roman(doc)]);
                }
            }
            Some(value) => {
                roff.control("TP", [] as [&str; 0]).text([
                    bold(entry.key.clone()),
                    roman(" ("),
                    italic(entry.type_name()),
                    roman(format!(", default {value})")),
                ]);
                roff.text([roman(entry.doc.unwrap_or(""))]);
            }
        }
    }
    roff.control("SH", ["SEE ALSO"]).text([
        bold("crio"),
        roman("(8), "),
        bold("crioctl"),
        roman("(1)"),
    ]);
    roff.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crio_page_has_its_options_and_files() {
        let page = man(Page::Crio);
        assert!(page.starts_with(".ie"), "{}", &page[..80]);
        assert!(page.contains(".TH crio 8"), "{page}");
        assert!(page.contains("\\-\\-config\\-dir"), "{page}");
        assert!(page.contains("/etc/crio/crio.conf.d/"), "{page}");
        assert!(page.contains("crio.conf"));
    }

    #[test]
    fn conf_page_lists_every_key_with_its_default() {
        let page = man(Page::CrioConf);
        let config = crio_config::Config::default();
        for entry in crio_config::entries(&config) {
            if entry.value.is_some() {
                assert!(
                    page.contains(&format!("\\fB{}\\fR", entry.key)),
                    "{}",
                    entry.path
                );
            } else {
                assert!(
                    page.contains(&format!(".SH [{}]\n", entry.path)),
                    "{}",
                    entry.path
                );
            }
        }
        assert!(page.contains("listen"));
        assert!(page.contains("/run/crio/crio.sock"));
    }

    #[test]
    fn completions_name_the_subcommands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let script = completion(shell);
            assert!(script.contains("config"), "{shell}");
            assert!(script.contains("status"), "{shell}");
        }
    }
}
