//! Image verbs, like crictl's: `pull`, `images`, `inspecti`, `rmi`,
//! `imagefsinfo`.

use std::collections::HashMap;

use anyhow::{Result, bail};
use crio_api::client::CriClient;
use crio_api::cri::{
    AuthConfig, Image, ImageFilter, ImageFsInfoRequest, ImageSpec, ImageStatusRequest,
    ListImagesRequest, PullImageRequest, RemoveImageRequest,
};
use serde_json::{Map, Value};

use super::rpc_error;
use crate::output::{Format, print, table};

/// Flags of `pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// The image to pull.
    pub image: String,
    /// Registry credentials, USERNAME[:PASSWORD].
    #[arg(long)]
    pub creds: Option<String>,
    /// An identity token for the registry.
    #[arg(long)]
    pub auth: Option<String>,
}

/// Flags of `images`.
#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Only images matching this name.
    pub image: Option<String>,
    /// Only image IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
    /// Show full image IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

/// Flags of `rmi`.
#[derive(Debug, clap::Args)]
pub struct RmiArgs {
    /// Images to remove (ID, tag or digest).
    pub images: Vec<String>,
    /// Remove every image.
    #[arg(short, long)]
    pub all: bool,
    /// Remove every image no container uses.
    #[arg(short, long)]
    pub prune: bool,
}

/// Flags of `imagefsinfo`.
#[derive(Debug, clap::Args)]
pub struct FsInfoArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value = "json")]
    pub output: Format,
}

/// `pull`.
pub async fn pull(client: &mut CriClient, args: &PullArgs) -> Result<()> {
    let auth = match (&args.creds, &args.auth) {
        (Some(creds), _) => {
            let (user, pass) = creds.split_once(':').unwrap_or((creds, ""));
            Some(AuthConfig {
                username: user.to_string(),
                password: pass.to_string(),
                ..AuthConfig::default()
            })
        }
        (None, Some(token)) => Some(AuthConfig {
            identity_token: token.clone(),
            ..AuthConfig::default()
        }),
        (None, None) => None,
    };
    let request = client.image.pull_image(PullImageRequest {
        image: Some(spec(&args.image)),
        auth,
        sandbox_config: None,
    });
    let resp = with_progress(&args.image, request)
        .await
        .map_err(|s| rpc_error("PullImage", s))?
        .into_inner();
    println!("Image is up to date for {}", resp.image_ref);
    Ok(())
}

/// Awaits `call`, showing the elapsed time on stderr when it is a terminal
/// (the CRI reports no byte counts while a pull runs).
async fn with_progress<T>(image: &str, call: impl std::future::Future<Output = T>) -> T {
    use std::io::{IsTerminal, Write};
    if !std::io::stderr().is_terminal() {
        return call.await;
    }
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
    tokio::pin!(call);
    loop {
        tokio::select! {
            out = &mut call => {
                eprint!("\r\x1b[K");
                return out;
            }
            _ = tick.tick() => {
                eprint!("\rPulling {image} ... {:.1}s", started.elapsed().as_secs_f64());
                let _ = std::io::stderr().flush();
            }
        }
    }
}

fn spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_string(),
        ..ImageSpec::default()
    }
}

async fn list(client: &mut CriClient, name: Option<&str>) -> Result<Vec<Image>> {
    let filter = name.map(|n| ImageFilter {
        image: Some(spec(n)),
    });
    Ok(client
        .image
        .list_images(ListImagesRequest { filter })
        .await
        .map_err(|s| rpc_error("ListImages", s))?
        .into_inner()
        .images)
}

/// Sizes like crictl's: 4.27MB.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    // Four significant digits, trailing zeros dropped, as docker's units do.
    let int_digits = format!("{}", value.trunc() as u64).len();
    let text = format!("{value:.*}", 4usize.saturating_sub(int_digits));
    let digits = if text.contains('.') {
        text.trim_end_matches('0')
    } else {
        &text
    };
    format!("{}{}", digits.trim_end_matches('.'), UNITS[unit])
}

/// `images`.
pub async fn images(client: &mut CriClient, args: &ImagesArgs) -> Result<()> {
    let images = list(client, args.image.as_deref()).await?;
    if args.quiet {
        for image in &images {
            println!("{}", image.id);
        }
        return Ok(());
    }
    if args.output != Format::Table {
        return print(&serde_json::json!({ "images": images }), args.output);
    }
    let mut rows = Vec::new();
    for image in &images {
        let id = image.id.trim_start_matches("sha256:");
        let id = if args.no_trunc {
            image.id.clone()
        } else {
            id.chars().take(13).collect()
        };
        let digest = image
            .repo_digests
            .first()
            .and_then(|d| d.split_once('@'))
            .map(|(_, d)| {
                d.trim_start_matches("sha256:")
                    .chars()
                    .take(13)
                    .collect::<String>()
            })
            .unwrap_or_else(|| "<none>".into());
        let names: Vec<(String, String)> = if image.repo_tags.is_empty() {
            let repo = image
                .repo_digests
                .first()
                .and_then(|d| d.split_once('@'))
                .map(|(r, _)| r.to_string())
                .unwrap_or_else(|| "<none>".into());
            vec![(repo, "<none>".into())]
        } else {
            image
                .repo_tags
                .iter()
                .map(
                    |t| match t.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')) {
                        Some((r, tag)) => (r.to_string(), tag.to_string()),
                        None => (t.clone(), "<none>".into()),
                    },
                )
                .collect()
        };
        for (repo, tag) in names {
            let mut row = vec![repo, tag];
            if args.digests {
                row.push(digest.clone());
            }
            row.extend([id.clone(), human_size(image.size)]);
            rows.push(row);
        }
    }
    let mut header = vec!["IMAGE", "TAG"];
    if args.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "SIZE"]);
    println!("{}", table(&header, &rows));
    Ok(())
}

/// `inspecti`.
pub async fn inspect(client: &mut CriClient, args: &super::InspectArgs) -> Result<()> {
    let mut found = Vec::new();
    for name in &args.ids {
        let resp = client
            .image
            .image_status(ImageStatusRequest {
                image: Some(spec(name)),
                verbose: true,
            })
            .await
            .map_err(|s| rpc_error("ImageStatus", s))?
            .into_inner();
        let Some(image) = resp.image else {
            bail!("no such image {name:?} present");
        };
        let mut out = Map::new();
        out.insert("status".into(), serde_json::to_value(&image)?);
        out.insert("info".into(), info_json(&resp.info));
        found.push(Value::Object(out));
    }
    let value = if found.len() == 1 {
        found.remove(0)
    } else {
        Value::Array(found)
    };
    print(&value, args.output)
}

/// Verbose info values are JSON documents: shown as such.
fn info_json(info: &HashMap<String, String>) -> Value {
    let merged: Map<String, Value> = info
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone())),
            )
        })
        .collect();
    match merged.get("info") {
        Some(inner) if merged.len() == 1 => inner.clone(),
        _ => Value::Object(merged),
    }
}

/// `rmi`.
pub async fn rmi(client: &mut CriClient, args: &RmiArgs) -> Result<()> {
    let targets: Vec<String> = if args.all || args.prune {
        list(client, None)
            .await?
            .into_iter()
            .filter(|i| !i.pinned)
            .map(|i| i.id)
            .collect()
    } else if args.images.is_empty() {
        bail!("name at least one image, or use --all or --prune");
    } else {
        args.images.clone()
    };
    let mut failed = 0;
    for name in &targets {
        match client
            .image
            .remove_image(RemoveImageRequest {
                image: Some(spec(name)),
            })
            .await
        {
            Ok(_) => println!("Deleted: {name}"),
            Err(s) => {
                eprintln!("{}", rpc_error("RemoveImage", s));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} images not removed", targets.len());
    }
    Ok(())
}

/// `imagefsinfo`.
pub async fn fs_info(client: &mut CriClient, args: &FsInfoArgs) -> Result<()> {
    let resp = client
        .image
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .map_err(|s| rpc_error("ImageFsInfo", s))?
        .into_inner();
    print(&resp, args.output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_crictl() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_270_000), "4.27MB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(human_size(123_456_789), "123.5MB");
        assert_eq!(human_size(999_999), "1000kB");
    }
}
