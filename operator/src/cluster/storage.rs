//! The volume claims of a BurstCluster's StatefulSets (pure): the controller's store (`data`, with
//! `persistence.enabled`) and each worker's output (`out`, with `workers.outputVolume`), and whether a stored
//! StatefulSet's claim templates differ from the wanted ones.
//!
//! A StatefulSet's `volumeClaimTemplates` cannot change in place: the API server refuses the apply. So when
//! [`claims_changed`] says they did, the reconciler deletes the stored StatefulSet with its pods orphaned (they
//! keep running) and applies the new one once it is gone; the new one adopts the pods and replaces them one at
//! a time. Claims made from the old templates are kept (a StatefulSet never deletes them by default).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::SpecError;
use crate::crd::BurstCluster;

/// A claim template: `size` of ReadWriteOnce storage of `storage_class` (default: the cluster's default).
pub(super) fn claim(name: &str, size: &str, storage_class: Option<String>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: storage_class,
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(size.into()))])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// Sizes the spec sets must be quantities above zero: the API server would refuse the StatefulSet otherwise,
/// with a message about the StatefulSet rather than the field.
pub(super) fn validate(bc: &BurstCluster) -> Result<(), SpecError> {
    let persistence = &bc.spec.controller.persistence;
    let sizes = [
        ("spec.controller.persistence.size", persistence.size.as_deref().filter(|_| persistence.enabled)),
        ("spec.workers.outputVolume.size", bc.spec.workers.output_volume.as_ref().map(|v| v.size.as_str())),
    ];
    for (field, size) in sizes {
        if let Some(size) = size.filter(|s| !quantity(s).is_some_and(|q| q > 0.0)) {
            return Err(SpecError(format!("{field} {size:?} is not a size like 10Gi")));
        }
    }
    Ok(())
}

/// A Kubernetes quantity (`10Gi`, `500M`, `1.5`, `2e9`) as a number; `None` when `text` is not one.
pub fn quantity(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-'))).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if !number.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 2f64.powi(10),
        "Mi" => 2f64.powi(20),
        "Gi" => 2f64.powi(30),
        "Ti" => 2f64.powi(40),
        "Pi" => 2f64.powi(50),
        "Ei" => 2f64.powi(60),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            10f64.powi(exponent.parse().ok()?)
        }
    };
    Some(number * scale)
}

/// What is compared of one claim template: its name, requested size and StorageClass.
struct Template<'a> {
    name: &'a str,
    size: Option<f64>,
    class: Option<&'a str>,
}

fn templates(sts: &StatefulSet) -> Vec<Template<'_>> {
    let claims = sts.spec.volume_claim_templates.as_deref().unwrap_or_default();
    claims
        .iter()
        .map(|c| {
            let spec = c.spec.as_ref();
            let requests = spec.and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref());
            Template {
                name: c.metadata.name.as_deref().unwrap_or_default(),
                size: requests.and_then(|r| r.get("storage")).and_then(|q| quantity(&q.0)),
                class: spec.and_then(|s| s.storage_class_name.as_deref()),
            }
        })
        .collect()
}

/// Whether `stored`'s claim templates differ from `want`'s: another set of names, another size, or another
/// StorageClass where `want` names one.
///
/// # Guarantees
/// Never true for what the API server stores from `want`, so the workers are not replaced over and over: sizes
/// are compared as numbers (the server may write `10240Mi` back as `10Gi`), and a StorageClass `want` leaves
/// unset is not compared (admission may fill it in). The price: removing a StorageClass from the spec is not
/// seen here, and the apply that follows is refused and reported as a failed reconcile.
pub fn claims_changed(stored: &StatefulSet, want: &StatefulSet) -> bool {
    let (have, want) = (templates(stored), templates(want));
    if have.len() != want.len() {
        return true;
    }
    want.iter().any(|w| match have.iter().find(|h| h.name == w.name) {
        None => true,
        Some(h) => {
            let resized = match (w.size, h.size) {
                (Some(a), Some(b)) => (a - b).abs() > 1e-9 * a.abs().max(b.abs()),
                _ => false,
            };
            resized || w.class.is_some_and(|class| h.class != Some(class))
        }
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::StatefulSetSpec;

    use super::*;

    fn with_claims(claims: Vec<PersistentVolumeClaim>) -> StatefulSet {
        let spec = StatefulSetSpec { volume_claim_templates: Some(claims), ..StatefulSetSpec::default() };
        StatefulSet { spec, ..StatefulSet::default() }
    }

    #[test]
    fn quantities_are_read_as_kubernetes_writes_them() {
        assert_eq!(quantity("10Gi"), Some(10.0 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(quantity("10240Mi"), quantity("10Gi"));
        assert_eq!(quantity("500M"), Some(5e8));
        assert_eq!(quantity("1.5k"), Some(1500.0));
        assert_eq!(quantity("2e3"), Some(2000.0));
        assert_eq!(quantity("100m"), Some(0.1));
        assert_eq!(quantity("7"), Some(7.0));
        for bad in ["", "Gi", "10 Gi", "10GB", "ten", "1.2.3Gi", "10gi", "e3"] {
            assert_eq!(quantity(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_claim_is_changed_by_its_presence_size_or_named_class_but_not_by_how_the_server_writes_it() {
        let want = with_claims(vec![claim("out", "10Gi", None)]);
        assert!(!claims_changed(&with_claims(vec![claim("out", "10240Mi", None)]), &want));
        // Admission filled in the default StorageClass: not a change the spec asked for.
        assert!(!claims_changed(&with_claims(vec![claim("out", "10Gi", Some("standard".into()))]), &want));
        assert!(claims_changed(&with_claims(vec![]), &want), "added");
        assert!(claims_changed(&StatefulSet::default(), &want), "added to a StatefulSet without templates");
        assert!(claims_changed(&want, &with_claims(vec![])), "removed");
        assert!(claims_changed(&with_claims(vec![claim("out", "5Gi", None)]), &want), "resized");
        assert!(claims_changed(&with_claims(vec![claim("data", "10Gi", None)]), &want), "renamed");
        let fast = with_claims(vec![claim("out", "10Gi", Some("fast".into()))]);
        assert!(claims_changed(&with_claims(vec![claim("out", "10Gi", Some("standard".into()))]), &fast));
        assert!(!claims_changed(&fast, &fast));
        assert!(!claims_changed(&StatefulSet::default(), &with_claims(vec![])), "none either way");
    }
}
