//! The trust policy (containers-policy.json(5)): which images a pull may
//! accept, checked after the manifest is known and before any layer is
//! stored.
//!
//! What is implemented, and how it reads the man page:
//! - `default` and the `docker` transport's scopes; other transports never
//!   apply to a registry pull and are ignored. The most specific scope
//!   wins: the reference with tag or digest, the repository, each enclosing
//!   namespace, the host (`host[:port]`), `*.domain` wildcards from the
//!   longest domain, the transport's `""`, then `default`. Scopes are written
//!   normalised (`docker.io/library/busybox`); other spellings are refused.
//! - Requirements: `insecureAcceptAnything`, `reject`, and `sigstoreSigned`
//!   with `keyPath`, `keyPaths`, `keyData` or `keyDatas` (ECDSA P-256 keys,
//!   read when the policy is loaded) and every `signedIdentity`.
//!   `signedBy` (GPG) and `sigstoreSigned` with Fulcio, Rekor or PKI are
//!   kept and fail at evaluation as not supported: never silently accepted.
//! - Every requirement of the scope must hold; a `sigstoreSigned` one holds
//!   when at least one signature verifies, is for this manifest digest and
//!   names a matching identity.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use crate::reference::{Reference, digest_problem, registry_problem, strip_name_prefix};
use crate::registries::{host_of, host_problem, normalise_location};
use crate::sigstore::{self, PublicKey};

mod error;
pub use crate::sigstore::{SigstoreSignature, signature_tag};
pub use error::{PolicyError, PolicyProblem, Rejection, SignatureFailure};

/// Largest policy or key file read.
const MAX_FILE: u64 = 4 << 20;
/// Most signatures looked at for one image.
const MAX_SIGNATURES: usize = 64;

/// One requirement of a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Accept the image.
    InsecureAcceptAnything,
    /// Refuse the image.
    Reject,
    /// Accept only images signed with one of the keys, for a matching
    /// identity.
    SigstoreSigned {
        /// The trusted keys.
        keys: Vec<PublicKey>,
        /// Which signed names are acceptable for the image.
        identity: SignedIdentity,
    },
    /// A requirement crio-rs cannot check: it always fails, saying so.
    Unsupported(String),
}

impl Requirement {
    /// The requirement's `type` as policy.json spells it.
    fn kind(&self) -> &str {
        match self {
            Requirement::InsecureAcceptAnything => "insecureAcceptAnything",
            Requirement::Reject => "reject",
            Requirement::SigstoreSigned { .. } => "sigstoreSigned",
            Requirement::Unsupported(what) => what,
        }
    }
}

/// `signedIdentity`: how the name in a signature must relate to the image
/// pulled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedIdentity {
    /// The same name, tag and digest.
    MatchExact,
    /// The same repository for a pull by digest, else the same name and tag.
    MatchRepoDigestOrExact,
    /// The same repository.
    MatchRepository,
    /// The signature names exactly this reference.
    ExactReference(Reference),
    /// The signature names this repository (`registry/repository`).
    ExactRepository(String),
    /// Images under `prefix` are checked as if under `signed_prefix`, then
    /// as [`SignedIdentity::MatchRepoDigestOrExact`].
    RemapIdentity {
        /// `host[:port][/path]` of the image pulled.
        prefix: String,
        /// What replaces it.
        signed_prefix: String,
    },
}

/// A parsed policy.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    default: Vec<Requirement>,
    docker: BTreeMap<String, Vec<Requirement>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyJson {
    default: Vec<Value>,
    #[serde(default)]
    transports: BTreeMap<String, BTreeMap<String, Vec<Value>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SigstoreJson {
    key_path: Option<String>,
    key_paths: Option<Vec<String>>,
    key_data: Option<String>,
    key_datas: Option<Vec<String>>,
    fulcio: Option<Value>,
    rekor_public_key_path: Option<Value>,
    rekor_public_key_paths: Option<Value>,
    rekor_public_key_data: Option<Value>,
    rekor_public_key_datas: Option<Value>,
    pki: Option<Value>,
    signed_identity: Option<Value>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
enum IdentityJson {
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    #[serde(rename_all = "camelCase")]
    ExactReference {
        docker_reference: String,
    },
    #[serde(rename_all = "camelCase")]
    ExactRepository {
        docker_repository: String,
    },
    #[serde(rename_all = "camelCase")]
    RemapIdentity {
        prefix: String,
        signed_prefix: String,
    },
}

impl Policy {
    /// Reads and checks a policy file; `keyPath` files are read now.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = read_bounded(path)?;
        Policy::parse(&String::from_utf8_lossy(&text), &path.display().to_string())
    }

    /// Parses policy.json text; `source_name` names it in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Policy, PolicyError> {
        let json: PolicyJson = serde_json::from_str(text).map_err(|e| PolicyError::Syntax {
            source_name: source_name.to_string(),
            detail: e.to_string(),
        })?;
        let invalid = |place: String, reason: PolicyProblem| PolicyError::Invalid {
            source_name: source_name.to_string(),
            place,
            reason,
        };
        let default =
            parse_requirements(json.default, "default").map_err(|(p, r)| invalid(p, r))?;
        let mut docker = BTreeMap::new();
        for (scope, list) in json
            .transports
            .into_iter()
            .filter(|(t, _)| t == "docker")
            .flat_map(|(_, s)| s)
        {
            let place = format!("transports.docker {scope:?}");
            scope_problem(&scope).map_err(|r| invalid(place.clone(), r))?;
            let requirements = parse_requirements(list, &place).map_err(|(p, r)| invalid(p, r))?;
            docker.insert(scope, requirements);
        }
        Ok(Policy { default, docker })
    }

    /// The requirements that apply to `reference`.
    pub fn requirements(&self, reference: &Reference) -> &[Requirement] {
        self.applicable(reference).1
    }

    /// True when evaluating `reference` needs its signatures fetched.
    pub fn needs_signatures(&self, reference: &Reference) -> bool {
        self.requirements(reference)
            .iter()
            .any(|r| matches!(r, Requirement::SigstoreSigned { .. }))
    }

    /// Checks every requirement for `reference` whose manifest has
    /// `manifest_digest`, given the signatures stored beside it.
    pub fn evaluate(
        &self,
        reference: &Reference,
        manifest_digest: &str,
        signatures: &[SigstoreSignature],
    ) -> Result<(), PolicyError> {
        let (scope, requirements) = self.applicable(reference);
        for (i, requirement) in requirements.iter().enumerate() {
            check(requirement, reference, manifest_digest, signatures).map_err(|reason| {
                PolicyError::Rejected {
                    image: reference.to_string(),
                    scope: scope.clone(),
                    index: i + 1,
                    requirement: requirement.kind().to_string(),
                    reason,
                }
            })?;
        }
        Ok(())
    }

    /// The scope that applies, named as in errors, and its requirements.
    fn applicable(&self, reference: &Reference) -> (String, &[Requirement]) {
        scopes(reference)
            .into_iter()
            .find_map(|scope| {
                self.docker
                    .get(&scope)
                    .map(|r| (format!("transports.docker {scope:?}"), r.as_slice()))
            })
            .unwrap_or_else(|| ("default".to_string(), &self.default))
    }
}

/// The scopes that could apply to `reference`, most specific first.
fn scopes(reference: &Reference) -> Vec<String> {
    let name = reference.name();
    let mut out = Vec::new();
    let with_tag = reference.tag.as_ref().map(|t| format!("{name}:{t}"));
    let with_digest = reference.digest.as_ref().map(|d| format!("{name}@{d}"));
    out.extend(with_digest);
    out.extend(with_tag);
    let mut prefix = name.as_str();
    loop {
        out.push(prefix.to_string());
        match prefix.rfind('/') {
            Some(i) => prefix = &prefix[..i],
            None => break,
        }
    }
    let host = host_of(&reference.registry);
    let mut rest = host;
    while let Some(i) = rest.find('.') {
        rest = &rest[i + 1..];
        out.push(format!("*.{rest}"));
    }
    out.push(String::new());
    out
}

/// Checks a `transports.docker` scope.
fn scope_problem(scope: &str) -> Result<(), PolicyProblem> {
    if scope.is_empty() {
        return Ok(());
    }
    if let Some(domain) = scope.strip_prefix("*.") {
        return host_problem(domain).map_err(|r| PolicyProblem::WildcardDomain(Box::new(r)));
    }
    if !scope.contains('/') {
        return registry_problem(scope).map_or(Ok(()), |r| Err(PolicyProblem::Host(r)));
    }
    let parsed = Reference::parse(scope).map_err(|e| PolicyProblem::Scope(Box::new(e)))?;
    if parsed.to_string() != scope {
        return Err(PolicyProblem::NotNormalised(parsed.to_string()));
    }
    Ok(())
}

/// Parses a non-empty requirement list; an error is (place, reason).
fn parse_requirements(
    list: Vec<Value>,
    place: &str,
) -> Result<Vec<Requirement>, (String, PolicyProblem)> {
    if list.is_empty() {
        return Err((place.to_string(), PolicyProblem::Empty));
    }
    list.into_iter()
        .enumerate()
        .map(|(i, value)| {
            parse_requirement(value).map_err(|r| (format!("{place}: requirement {}", i + 1), r))
        })
        .collect()
}

fn parse_requirement(mut value: Value) -> Result<Requirement, PolicyProblem> {
    let object = value.as_object_mut().ok_or(PolicyProblem::NotObject)?;
    let kind = match object.remove("type") {
        Some(Value::String(kind)) => kind,
        _ => return Err(PolicyProblem::NoType),
    };
    let no_more_fields = |object: &serde_json::Map<String, Value>, r| match object.keys().next() {
        Some(k) => Err(PolicyProblem::UnknownField {
            kind: kind.clone(),
            field: k.clone(),
        }),
        None => Ok(r),
    };
    match kind.as_str() {
        "insecureAcceptAnything" => no_more_fields(object, Requirement::InsecureAcceptAnything),
        "reject" => no_more_fields(object, Requirement::Reject),
        "signedBy" => Ok(Requirement::Unsupported(
            "signedBy: GPG signatures are not supported, use sigstoreSigned".into(),
        )),
        "sigstoreSigned" => {
            let sigstore = |e| PolicyProblem::Sigstore(Box::new(e));
            let json: SigstoreJson =
                serde_json::from_value(value).map_err(|e| sigstore(PolicyProblem::Json(e)))?;
            parse_sigstore(json).map_err(sigstore)
        }
        other => Err(PolicyProblem::UnknownType(other.to_string())),
    }
}

fn parse_sigstore(json: SigstoreJson) -> Result<Requirement, PolicyProblem> {
    let transparency = [
        &json.rekor_public_key_path,
        &json.rekor_public_key_paths,
        &json.rekor_public_key_data,
        &json.rekor_public_key_datas,
    ];
    if json.fulcio.is_some() || json.pki.is_some() || transparency.iter().any(|v| v.is_some()) {
        return Ok(Requirement::Unsupported(
            "sigstoreSigned: Fulcio, Rekor and PKI verification are not supported, only public keys".into(),
        ));
    }
    let keys = match (json.key_path, json.key_paths, json.key_data, json.key_datas) {
        (Some(path), None, None, None) => vec![key_from_path(&path)?],
        (None, Some(paths), None, None) if !paths.is_empty() => paths
            .iter()
            .map(|p| key_from_path(p))
            .collect::<Result<_, _>>()?,
        (None, None, Some(data), None) => vec![key_from_data(&data)?],
        (None, None, None, Some(datas)) if !datas.is_empty() => datas
            .iter()
            .map(|d| key_from_data(d))
            .collect::<Result<_, _>>()?,
        _ => return Err(PolicyProblem::KeyChoice),
    };
    let identity = match json.signed_identity {
        None => SignedIdentity::MatchRepoDigestOrExact,
        Some(value) => parse_identity(value)?,
    };
    Ok(Requirement::SigstoreSigned { keys, identity })
}

fn parse_identity(value: Value) -> Result<SignedIdentity, PolicyProblem> {
    let json: IdentityJson = serde_json::from_value(value).map_err(PolicyProblem::Identity)?;
    let name = |field| {
        move |source| PolicyProblem::IdentityName {
            field,
            source: Box::new(source),
        }
    };
    Ok(match json {
        IdentityJson::MatchExact => SignedIdentity::MatchExact,
        IdentityJson::MatchRepoDigestOrExact => SignedIdentity::MatchRepoDigestOrExact,
        IdentityJson::MatchRepository => SignedIdentity::MatchRepository,
        IdentityJson::ExactReference { docker_reference } => {
            let r = Reference::parse(&docker_reference).map_err(name("dockerReference"))?;
            if r.tag.is_none() && r.digest.is_none() {
                return Err(PolicyProblem::ReferenceWithoutTag(docker_reference));
            }
            SignedIdentity::ExactReference(r)
        }
        IdentityJson::ExactRepository { docker_repository } => {
            let r = Reference::parse(&docker_repository).map_err(name("dockerRepository"))?;
            if r.tag.is_some() || r.digest.is_some() {
                return Err(PolicyProblem::RepositoryWithTag(docker_repository));
            }
            SignedIdentity::ExactRepository(r.name())
        }
        IdentityJson::RemapIdentity {
            prefix,
            signed_prefix,
        } => {
            let field = |field, value: &str| {
                normalise_location(value).map_err(|source| PolicyProblem::IdentityPrefix {
                    field,
                    value: value.to_string(),
                    source: Box::new(source),
                })
            };
            SignedIdentity::RemapIdentity {
                prefix: field("prefix", &prefix)?,
                signed_prefix: field("signedPrefix", &signed_prefix)?,
            }
        }
    })
}

fn key_from_path(path: &str) -> Result<PublicKey, PolicyProblem> {
    let bytes = read_bounded(Path::new(path)).map_err(|e| PolicyProblem::KeyRead(Box::new(e)))?;
    let pem = String::from_utf8(bytes).map_err(|_| PolicyProblem::KeyNotPem(path.to_string()))?;
    PublicKey::from_pem(&pem).map_err(|source| PolicyProblem::KeyPath {
        path: path.to_string(),
        source: Box::new(source),
    })
}

fn key_from_data(data: &str) -> Result<PublicKey, PolicyProblem> {
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(PolicyProblem::KeyDataEncoding)?;
    PublicKey::from_pem(&pem).map_err(|e| PolicyProblem::KeyData(Box::new(e)))
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, PolicyError> {
    Ok(crate::files::read_bytes(path, MAX_FILE)?)
}

/// Checks one requirement; the error is why it failed.
fn check(
    requirement: &Requirement,
    reference: &Reference,
    manifest_digest: &str,
    signatures: &[SigstoreSignature],
) -> Result<(), Rejection> {
    let (keys, identity) = match requirement {
        Requirement::InsecureAcceptAnything => return Ok(()),
        Requirement::Reject => return Err(Rejection::Reject),
        Requirement::Unsupported(what) => return Err(Rejection::Unsupported(what.clone())),
        Requirement::SigstoreSigned { keys, identity } => (keys, identity),
    };
    if let Some(reason) = digest_problem(manifest_digest) {
        return Err(Rejection::BadDigest {
            digest: manifest_digest.to_string(),
            reason,
        });
    }
    if signatures.is_empty() {
        return Err(Rejection::NoSignature(signature_tag(manifest_digest)));
    }
    let mut failures = Vec::new();
    for signature in signatures.iter().take(MAX_SIGNATURES) {
        let outcome = sigstore::verify(keys, signature)
            .map_err(SignatureFailure::Verify)
            .and_then(|claim| {
                if claim.manifest_digest != manifest_digest {
                    return Err(SignatureFailure::OtherManifest {
                        signed: claim.manifest_digest,
                        wanted: manifest_digest.to_string(),
                    });
                }
                identity_matches(identity, reference, &claim.docker_reference)
            });
        match outcome {
            Ok(()) => return Ok(()),
            Err(e) => failures.push(e),
        }
    }
    Err(Rejection::Signatures(failures))
}

/// Whether a signature naming `signed` covers the image `reference`.
fn identity_matches(
    identity: &SignedIdentity,
    reference: &Reference,
    signed: &str,
) -> Result<(), SignatureFailure> {
    let signed_ref = Reference::parse(signed).map_err(SignatureFailure::SignedName)?;
    let mismatch = |wanted: &str| {
        Err(SignatureFailure::Identity {
            signed: signed.to_string(),
            wanted: wanted.to_string(),
        })
    };
    let exact = |image: &Reference| {
        if image == &signed_ref {
            Ok(())
        } else {
            mismatch(&format!("{:?} exactly", image.to_string()))
        }
    };
    let repo_digest_or_exact = |image: &Reference| {
        if image.digest.is_none() {
            exact(image)
        } else if image.name() == signed_ref.name() {
            Ok(())
        } else {
            mismatch(&format!("repository {:?}", image.name()))
        }
    };
    match identity {
        SignedIdentity::MatchExact => exact(reference),
        SignedIdentity::MatchRepoDigestOrExact => repo_digest_or_exact(reference),
        SignedIdentity::MatchRepository if reference.name() == signed_ref.name() => Ok(()),
        SignedIdentity::MatchRepository => mismatch(&format!("repository {:?}", reference.name())),
        SignedIdentity::ExactReference(want) if want == &signed_ref => Ok(()),
        SignedIdentity::ExactReference(want) => mismatch(&format!("{:?}", want.to_string())),
        SignedIdentity::ExactRepository(want) if want == &signed_ref.name() => Ok(()),
        SignedIdentity::ExactRepository(want) => mismatch(&format!("repository {want:?}")),
        SignedIdentity::RemapIdentity {
            prefix,
            signed_prefix,
        } => {
            let name = reference.name();
            match strip_name_prefix(&name, prefix) {
                Some(rest) => {
                    let remapped = Reference::parse(&format!("{signed_prefix}{rest}"))
                        .map(|mut r| {
                            r.tag = reference.tag.clone();
                            r.digest = reference.digest.clone();
                            r
                        })
                        .map_err(SignatureFailure::Remap)?;
                    repo_digest_or_exact(&remapped)
                }
                None => repo_digest_or_exact(reference),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigstore::payload;
    use crate::sigstore::tests::{DIGEST, public_pem, sign, signing_key};

    const OTHER: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    fn key_data(seed: u8) -> String {
        base64::engine::general_purpose::STANDARD.encode(public_pem(&signing_key(seed)))
    }

    fn policy(text: &str) -> Policy {
        Policy::parse(text, "policy.json").unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(text: &str) -> String {
        Policy::parse(text, "policy.json")
            .expect_err(text)
            .to_string()
    }

    fn signed_policy(identity: &str) -> Policy {
        policy(&format!(
            r#"{{"default": [{{"type": "reject"}}], "transports": {{"docker": {{
                "quay.io": [{{"type": "sigstoreSigned", "keyData": "{}" {identity}}}]}}}}}}"#,
            key_data(1)
        ))
    }

    fn sig(seed: u8, identity: &str, digest: &str) -> SigstoreSignature {
        sign(&signing_key(seed), payload(identity, digest))
    }

    #[test]
    fn most_specific_scope_wins() {
        let p = policy(
            r#"{"default": [{"type": "reject"}], "transports": {"docker": {
                "": [{"type": "insecureAcceptAnything"}],
                "*.example.com": [{"type": "reject"}],
                "*.b.example.com": [{"type": "insecureAcceptAnything"}],
                "quay.io": [{"type": "reject"}],
                "quay.io/ns": [{"type": "insecureAcceptAnything"}],
                "quay.io/ns/app": [{"type": "reject"}],
                "quay.io/ns/app:ok": [{"type": "insecureAcceptAnything"}],
                "localhost:5000": [{"type": "reject"}]
            }, "atomic": {"x": [{"type": "whatever"}]}}}"#,
        );
        for (image, accepted) in [
            ("quay.io/other", false),
            ("quay.io/ns/x", true),
            ("quay.io/ns/x/y:1", true),
            ("quay.io/ns/app:1", false),
            ("quay.io/ns/app:ok", true),
            ("quay.io/nsx/a", false),
            ("a.example.com/x", false),
            ("a.b.example.com:443/x", true),
            ("example.com/x", true),
            ("localhost:5000/x", false),
            ("localhost/x", true),
            ("docker.io/busybox", true),
        ] {
            let result = p.evaluate(&r(image), DIGEST, &[]);
            assert_eq!(result.is_ok(), accepted, "{image}: {result:?}");
        }
        let e = p
            .evaluate(&r("quay.io/ns/app:1"), DIGEST, &[])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            r#"image quay.io/ns/app:1: rejected by policy transports.docker "quay.io/ns/app", requirement 1 (reject): the policy rejects this image"#
        );
        let only_default = policy(r#"{"default": [{"type": "reject"}]}"#);
        let e = only_default
            .evaluate(&r("quay.io/a:1"), DIGEST, &[])
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("rejected by policy default, requirement 1 (reject)"),
            "{e}"
        );
    }

    #[test]
    fn scopes_in_order() {
        assert_eq!(
            scopes(&r(&format!("a.b.io:5000/ns/app:1@{DIGEST}"))),
            [
                format!("a.b.io:5000/ns/app@{DIGEST}"),
                "a.b.io:5000/ns/app:1".into(),
                "a.b.io:5000/ns/app".into(),
                "a.b.io:5000/ns".into(),
                "a.b.io:5000".into(),
                "*.b.io".into(),
                "*.io".into(),
                String::new(),
            ]
        );
    }

    #[test]
    fn every_requirement_must_hold() {
        let p = policy(&format!(
            r#"{{"default": [{{"type": "insecureAcceptAnything"}},
                {{"type": "sigstoreSigned", "keyData": "{}"}}]}}"#,
            key_data(1)
        ));
        let image = r("quay.io/a:1");
        assert!(p.needs_signatures(&image));
        assert_eq!(p.requirements(&image).len(), 2);
        let e = p.evaluate(&image, DIGEST, &[]).unwrap_err().to_string();
        assert!(
            e.contains("requirement 2 (sigstoreSigned): no signature found"),
            "{e}"
        );
        assert!(e.contains(&signature_tag(DIGEST)), "{e}");
        p.evaluate(&image, DIGEST, &[sig(1, "quay.io/a:1", DIGEST)])
            .unwrap();
        let accept = policy(r#"{"default": [{"type": "insecureAcceptAnything"}]}"#);
        assert!(!accept.needs_signatures(&image));
    }

    #[test]
    fn signatures_verify_against_digest_and_key() {
        let p = signed_policy("");
        let image = r("quay.io/a:1");
        // One good signature among bad ones is enough.
        let mixed = [
            sig(2, "quay.io/a:1", DIGEST),
            sig(1, "quay.io/a:1", OTHER),
            sig(1, "quay.io/a:1", DIGEST),
        ];
        p.evaluate(&image, DIGEST, &mixed).unwrap();
        let e = p
            .evaluate(&image, DIGEST, &mixed[..2])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("signature 1: signature does not verify with any trusted key")
                && e.contains(&format!(
                    "signature 2: signs manifest {OTHER}, not {DIGEST}"
                )),
            "{e}"
        );
        let mut tampered = sig(1, "quay.io/a:1", DIGEST);
        tampered.payload = payload("quay.io/a:1", OTHER);
        assert!(p.evaluate(&image, OTHER, &[tampered]).is_err());
        let e = p
            .evaluate(&image, "sha256:zz", &mixed)
            .unwrap_err()
            .to_string();
        assert!(e.contains("manifest digest \"sha256:zz\""), "{e}");
    }

    #[test]
    fn default_identity_is_repo_digest_or_exact() {
        let p = signed_policy("");
        let by_tag = r("quay.io/a:1");
        let by_digest = r(&format!("quay.io/a@{DIGEST}"));
        p.evaluate(&by_tag, DIGEST, &[sig(1, "quay.io/a:1", DIGEST)])
            .unwrap();
        let e = p
            .evaluate(&by_tag, DIGEST, &[sig(1, "quay.io/a:2", DIGEST)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(r#"signed for "quay.io/a:2", the policy wants "quay.io/a:1" exactly"#),
            "{e}"
        );
        assert!(
            p.evaluate(&by_tag, DIGEST, &[sig(1, "quay.io/a", DIGEST)])
                .is_err()
        );
        p.evaluate(&by_digest, DIGEST, &[sig(1, "quay.io/a:anything", DIGEST)])
            .unwrap();
        assert!(
            p.evaluate(&by_digest, DIGEST, &[sig(1, "quay.io/b:1", DIGEST)])
                .is_err()
        );
        let e = p
            .evaluate(&by_tag, DIGEST, &[sig(1, "not a ref", DIGEST)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("signed identity: image reference \"not a ref\""),
            "{e}"
        );
    }

    #[test]
    fn other_identities() {
        let image = r("quay.io/team/app:1");
        let check = |identity: &str, signed: &str| {
            signed_policy(&format!(r#", "signedIdentity": {identity}"#))
                .evaluate(&image, DIGEST, &[sig(1, signed, DIGEST)])
                .is_ok()
        };
        assert!(check(r#"{"type": "matchExact"}"#, "quay.io/team/app:1"));
        assert!(!check(r#"{"type": "matchExact"}"#, "quay.io/team/app"));
        assert!(check(
            r#"{"type": "matchRepository"}"#,
            "quay.io/team/app:other"
        ));
        assert!(!check(
            r#"{"type": "matchRepository"}"#,
            "quay.io/team/other:1"
        ));
        let exact_ref = r#"{"type": "exactReference", "dockerReference": "quay.io/signed/app:v1"}"#;
        assert!(check(exact_ref, "quay.io/signed/app:v1"));
        assert!(!check(exact_ref, "quay.io/team/app:1"));
        let exact_repo = r#"{"type": "exactRepository", "dockerRepository": "quay.io/signed/app"}"#;
        assert!(check(exact_repo, "quay.io/signed/app:v9"));
        assert!(!check(exact_repo, "quay.io/team/app:1"));
        let remap = r#"{"type": "remapIdentity", "prefix": "quay.io/team", "signedPrefix": "registry.example.com/upstream"}"#;
        assert!(check(remap, "registry.example.com/upstream/app:1"));
        assert!(!check(remap, "quay.io/team/app:1"));
        let remap_other =
            r#"{"type": "remapIdentity", "prefix": "quay.io/elsewhere", "signedPrefix": "a.io"}"#;
        assert!(check(remap_other, "quay.io/team/app:1"));
    }

    #[test]
    fn unsupported_requirements_fail_at_evaluation() {
        let p = policy(
            r#"{"default": [{"type": "insecureAcceptAnything"}], "transports": {"docker": {
                "gpg.io": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/nonexistent"}],
                "fulcio.io": [{"type": "sigstoreSigned", "fulcio": {"caPath": "/x"}, "signedIdentity": {"type": "matchRepository"}}]
            }}}"#,
        );
        let e = p
            .evaluate(&r("gpg.io/a:1"), DIGEST, &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("(signedBy: GPG signatures are not supported, use sigstoreSigned): "),
            "{e}"
        );
        let e = p
            .evaluate(
                &r("fulcio.io/a:1"),
                DIGEST,
                &[sig(1, "fulcio.io/a:1", DIGEST)],
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Fulcio, Rekor and PKI verification are not supported"),
            "{e}"
        );
        p.evaluate(&r("quay.io/a:1"), DIGEST, &[]).unwrap();
    }

    #[test]
    fn keys_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, k2) = (dir.path().join("k1.pub"), dir.path().join("k2.pub"));
        std::fs::write(&k1, public_pem(&signing_key(1))).unwrap();
        std::fs::write(&k2, public_pem(&signing_key(2))).unwrap();
        let file = dir.path().join("policy.json");
        std::fs::write(
            &file,
            format!(
                r#"{{"default": [{{"type": "sigstoreSigned", "keyPaths": [{:?}, {:?}]}}]}}"#,
                k1.display().to_string(),
                k2.display().to_string()
            ),
        )
        .unwrap();
        let p = Policy::load(&file).unwrap();
        let image = r("quay.io/a:1");
        p.evaluate(&image, DIGEST, &[sig(2, "quay.io/a:1", DIGEST)])
            .unwrap();
        assert!(
            p.evaluate(&image, DIGEST, &[sig(3, "quay.io/a:1", DIGEST)])
                .is_err()
        );

        let missing = dir.path().join("missing.pub");
        let text = format!(
            r#"{{"default": [{{"type": "sigstoreSigned", "keyPath": {:?}}}]}}"#,
            missing.display().to_string()
        );
        let e = err(&text);
        assert!(
            e.starts_with("policy.json: default: requirement 1: sigstoreSigned: keyPath: "),
            "{e}"
        );
        assert!(e.contains("missing.pub"), "{e}");
        assert!(matches!(
            Policy::load(&missing),
            Err(PolicyError::File(crate::files::FileError::Read { .. }))
        ));
    }

    #[test]
    fn invalid_policies_name_the_place() {
        let k = key_data(1);
        for (text, needle) in [
            ("", "policy.json: EOF"),
            ("{}", "missing field `default`"),
            (
                r#"{"default": []}"#,
                "policy.json: default: the requirement list is empty",
            ),
            (
                r#"{"default": [{"type": "reject"}], "extra": 1}"#,
                "unknown field `extra`",
            ),
            (
                r#"{"default": [{"type": "nope"}]}"#,
                "default: requirement 1: unknown requirement type \"nope\"",
            ),
            (r#"{"default": [{}]}"#, "needs a string \"type\""),
            (r#"{"default": ["reject"]}"#, "must be an object"),
            (
                r#"{"default": [{"type": "reject", "x": 1}]}"#,
                "reject: unknown field \"x\"",
            ),
            (
                r#"{"default": [{"type": "reject"}], "transports": {"docker": {"quay.io": []}}}"#,
                "transports.docker \"quay.io\": the requirement list is empty",
            ),
            (
                r#"{"default": [{"type": "reject"}], "transports": {"docker": {"docker.io/busybox": [{"type": "reject"}]}}}"#,
                "write the scope normalised, as \"docker.io/library/busybox\"",
            ),
            (
                r#"{"default": [{"type": "reject"}], "transports": {"docker": {"*.": [{"type": "reject"}]}}}"#,
                "wildcard domain",
            ),
            (
                r#"{"default": [{"type": "reject"}], "transports": {"docker": {"ns/app": [{"type": "reject"}]}}}"#,
                "not fully qualified",
            ),
            (
                r#"{"default": [{"type": "sigstoreSigned"}]}"#,
                "exactly one of keyPath",
            ),
            (
                r#"{"default": [{"type": "sigstoreSigned", "keyDatas": []}]}"#,
                "exactly one of keyPath",
            ),
            (
                r#"{"default": [{"type": "sigstoreSigned", "keyData": "!!"}]}"#,
                "keyData: not base64 of a PEM document",
            ),
            (
                r#"{"default": [{"type": "sigstoreSigned", "keyData": "QUFB"}]}"#,
                "keyData: public key: not an ECDSA P-256 public key",
            ),
            (
                r#"{"default": [{"type": "sigstoreSigned", "keyData": "QUFB", "keyPath": "/x"}]}"#,
                "exactly one of keyPath",
            ),
            (
                r#"{"default": [{"type": "sigstoreSigned", "keyDat": "QUFB"}]}"#,
                "unknown field `keyDat`",
            ),
            (
                &format!(
                    r#"{{"default": [{{"type": "sigstoreSigned", "keyData": "{k}", "signedIdentity": {{"type": "matchAll"}}}}]}}"#
                ),
                "signedIdentity: unknown variant `matchAll`",
            ),
            (
                &format!(
                    r#"{{"default": [{{"type": "sigstoreSigned", "keyData": "{k}", "signedIdentity": {{"type": "exactReference", "dockerReference": "quay.io/a"}}}}]}}"#
                ),
                "needs a tag or digest",
            ),
            (
                &format!(
                    r#"{{"default": [{{"type": "sigstoreSigned", "keyData": "{k}", "signedIdentity": {{"type": "exactRepository", "dockerRepository": "quay.io/a:1"}}}}]}}"#
                ),
                "must not have a tag or digest",
            ),
            (
                &format!(
                    r#"{{"default": [{{"type": "sigstoreSigned", "keyData": "{k}", "signedIdentity": {{"type": "remapIdentity", "prefix": "x y", "signedPrefix": "a.io"}}}}]}}"#
                ),
                "signedIdentity: prefix \"x y\"",
            ),
        ] {
            let e = err(text);
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn hostile_signatures_are_bounded() {
        let p = signed_policy("");
        let image = r("quay.io/a:1");
        let junk: Vec<_> = (0..MAX_SIGNATURES)
            .map(|_| SigstoreSignature {
                payload: vec![0; 16],
                signature_base64: "@@@".into(),
            })
            .chain([sig(1, "quay.io/a:1", DIGEST)])
            .collect();
        // Only the first MAX_SIGNATURES are looked at.
        let e = p.evaluate(&image, DIGEST, &junk).unwrap_err().to_string();
        assert!(e.contains(&format!("signature {MAX_SIGNATURES}: ")), "{e}");
        assert!(
            !e.contains(&format!("signature {}: ", MAX_SIGNATURES + 1)),
            "{e}"
        );
    }
}
