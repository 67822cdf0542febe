//! Placement rules: which sites an object goes to. An object of vK8s V goes
//! to the sites of V's virtual sites, narrowed by its optional
//! `manifold.dev/virtual-sites` annotation. A site's [`Membership`] is all a
//! session needs to decide every object, so placement changes reduce to
//! "did this site's membership change".

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::names::VkName;

/// The annotation that narrows an object's placement.
pub const VIRTUAL_SITES_ANNOTATION: &str = "manifold.dev/virtual-sites";

/// For every vK8s placed on one site, the virtual sites of that vK8s (full
/// names) that contain the site. vK8s not placed on the site are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Membership(BTreeMap<String, BTreeSet<String>>);

/// What a site must do about one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Apply,
    Delete,
    /// Nothing of this object concerns the site.
    Skip,
}

impl Membership {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The vK8s placed on the site.
    pub fn clusters(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn contains_cluster(&self, vk: &str) -> bool {
        self.0.contains_key(vk)
    }

    /// Whether an object of `vk` with `narrowing` (the annotation's virtual
    /// sites, None without annotation) belongs on the site.
    pub fn placed(&self, vk: &str, narrowing: Option<&BTreeSet<String>>) -> bool {
        match (self.0.get(vk), narrowing) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(mine), Some(wanted)) => !mine.is_disjoint(wanted),
        }
    }

    /// An object was created or changed. An object of a vK8s on the site
    /// that the annotation excludes gets a Delete: it may have been placed
    /// before the annotation changed, and deleting a missing object is
    /// harmless.
    pub fn decide_upsert(&self, vk: &str, narrowing: Option<&BTreeSet<String>>) -> Decision {
        if self.placed(vk, narrowing) {
            Decision::Apply
        } else if self.contains_cluster(vk) {
            Decision::Delete
        } else {
            Decision::Skip
        }
    }

    /// An object was deleted. Its last annotation is not known, so every
    /// site of the vK8s gets the Delete.
    pub fn decide_delete(&self, vk: &str) -> Decision {
        if self.contains_cluster(vk) {
            Decision::Delete
        } else {
            Decision::Skip
        }
    }

    /// Deterministic JSON (sorted maps), stored with the site's cursor.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    pub fn from_json(v: &serde_json::Value) -> Option<Self> {
        serde_json::from_value(v.clone()).ok()
    }
}

/// The virtual sites an object's annotation names, as full names in the
/// object's namespace. None without the annotation (or when it is blank).
/// Entries naming another namespace or malformed ids match nothing, so an
/// annotation of only such entries places the object nowhere.
pub fn narrowing(vk: &VkName, annotation: Option<&str>) -> Option<BTreeSet<String>> {
    let value = annotation?.trim();
    if value.is_empty() {
        return None;
    }
    Some(
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                vk.virtual_site(s)
                    .unwrap_or_else(|| format!("!invalid:{s}"))
            })
            .collect(),
    )
}

/// What placement is computed from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlacementInputs {
    /// vK8s resource name → its virtual sites (full names).
    pub clusters: BTreeMap<String, BTreeSet<String>>,
    /// Virtual site full name → the site ids it resolves to.
    pub virtual_sites: BTreeMap<String, BTreeSet<String>>,
}

/// Every site's membership.
pub fn memberships(inputs: &PlacementInputs) -> HashMap<String, Membership> {
    let mut out: HashMap<String, Membership> = HashMap::new();
    for (vk, vss) in &inputs.clusters {
        for vs in vss {
            let Some(sites) = inputs.virtual_sites.get(vs) else {
                continue;
            };
            for site in sites {
                out.entry(site.clone())
                    .or_default()
                    .0
                    .entry(vk.clone())
                    .or_default()
                    .insert(vs.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const VK: &str = "tenants/acme/namespaces/shop/virtualClusters/demo";

    fn vs(id: &str) -> String {
        format!("tenants/acme/namespaces/shop/virtualSites/{id}")
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn inputs() -> PlacementInputs {
        PlacementInputs {
            clusters: [(VK.to_owned(), [vs("eu"), vs("us")].into_iter().collect())].into(),
            virtual_sites: [
                (vs("eu"), set(&["pa2-par", "ams9-ams"])),
                (vs("us"), set(&["ny8-nyc"])),
                (vs("unused"), set(&["pa2-par"])),
            ]
            .into(),
        }
    }

    #[test]
    fn membership_follows_virtual_sites_and_annotation() {
        let m = memberships(&inputs());
        assert_eq!(m.len(), 3);
        let par = &m["pa2-par"];
        assert!(par.placed(VK, None));
        assert!(!par.placed("tenants/acme/namespaces/shop/virtualClusters/other", None));
        let vk = VkName::parse("v", VK).unwrap();
        let only_us = narrowing(&vk, Some("us"));
        assert_eq!(par.decide_upsert(VK, only_us.as_ref()), Decision::Delete);
        assert_eq!(
            m["ny8-nyc"].decide_upsert(VK, only_us.as_ref()),
            Decision::Apply
        );
        let both = narrowing(&vk, Some(" us , eu "));
        assert_eq!(par.decide_upsert(VK, both.as_ref()), Decision::Apply);
        // Blank: no narrowing; only foreign entries: nowhere.
        assert_eq!(narrowing(&vk, Some("  ")), None);
        let foreign = narrowing(&vk, Some("tenants/x/namespaces/y/virtualSites/eu"));
        assert_eq!(par.decide_upsert(VK, foreign.as_ref()), Decision::Delete);
        assert_eq!(par.decide_delete(VK), Decision::Delete);
        assert_eq!(
            par.decide_delete("tenants/acme/namespaces/shop/virtualClusters/other"),
            Decision::Skip
        );
    }

    #[test]
    fn membership_round_trips_as_json() {
        let m = memberships(&inputs()).remove("pa2-par").unwrap();
        assert_eq!(Membership::from_json(&m.to_json()), Some(m));
        assert_eq!(
            Membership::from_json(&serde_json::json!({})),
            Some(Membership::default())
        );
    }
}
