//! `crioctl completion` and `crioctl man`: the shell completions and the
//! crioctl(1) manual page, generated from the command line's definition.

use anyhow::Result;
use clap::CommandFactory;

use crate::Cli;

/// `crioctl completion`'s arguments.
#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Prints the completion script for the shell asked.
pub fn completion(args: &CompletionArgs) -> Result<()> {
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "crioctl",
        &mut std::io::stdout(),
    );
    Ok(())
}

/// Prints crioctl(1) in roff.
pub fn man() -> Result<()> {
    print!("{}", page()?);
    Ok(())
}

fn page() -> Result<String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .section("1")
        .manual("crio-rs")
        .render(&mut out)?;
    Ok(String::from_utf8(out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_lists_the_verbs() {
        let page = page().unwrap();
        assert!(page.contains(".TH crioctl 1"), "{page}");
        for verb in ["runp", "exec", "completion", "shim"] {
            assert!(
                page.contains(&format!("crioctl\\-{verb}")),
                "{verb}: {page}"
            );
        }
    }
}
