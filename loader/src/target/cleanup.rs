//! `loader cleanup`: removes what deploys of a target left behind, after an interrupted or failed run.

use super::TargetError;
use crate::config::TargetConfig;

/// Deletes every function the loader deployed on `target` (Knative Services with the loader's label, Lambda
/// functions with the configured name prefix) and returns their names. Targets whose functions the loader does not
/// create (dirigent, http, grpc) have nothing to clean up.
pub async fn cleanup(target: &TargetConfig) -> Result<Vec<String>, TargetError> {
    match target {
        TargetConfig::Knative(knative) => super::knative::cleanup(knative).await,
        // Cleanup invokes nothing, so no per-invocation timeout applies.
        TargetConfig::Lambda(lambda) => {
            super::lambda::cleanup(&super::lambda::LambdaConfig::from_target(lambda, None)).await
        }
        TargetConfig::Dirigent { .. } | TargetConfig::Http { .. } | TargetConfig::Grpc { .. } => Ok(Vec::new()),
    }
}
