//! burst-operator: the Kubernetes resources burst is driven by. [`crd`] holds `BurstCluster` (a controller and
//! its workers) and `BurstJob` (one job, declared with kubectl); `crdgen` writes their CRDs into `crds/`.

pub mod cluster;
pub mod crd;
pub mod names;
