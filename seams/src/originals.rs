//! Where an upload's original is kept (`uploads.tier`): ingest moves it, the catalog
//! shows it to the lecture's owner.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OriginalTier {
    /// In the object store beside the renditions.
    Hot,
    /// On its way to the cold tier.
    Cooling,
    /// In the cold tier; a new transcode brings it back first.
    Cold,
}

impl OriginalTier {
    pub const ALL: [OriginalTier; 3] =
        [OriginalTier::Hot, OriginalTier::Cooling, OriginalTier::Cold];

    pub fn as_str(self) -> &'static str {
        match self {
            OriginalTier::Hot => "hot",
            OriginalTier::Cooling => "cooling",
            OriginalTier::Cold => "cold",
        }
    }

    /// The tier a stored text names; None for a text no version wrote.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_read_back_as_written() {
        for t in OriginalTier::ALL {
            assert_eq!(OriginalTier::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert_eq!(OriginalTier::parse("glacier"), None);
    }
}
