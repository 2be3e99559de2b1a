//! PLACEHOLDER: replaced by gateway settings (FelixConfiguration, GatewayConfiguration, env).
use super::{Problem, Resource};
#[derive(Debug, Clone, Default)]
pub struct Settings;
impl Settings {
    pub fn from_resources(_resources: &[Resource]) -> Result<Settings, Vec<Problem>> {
        Ok(Settings)
    }
}
