//! Lectern's ids, one type each, so a course's id cannot be passed where a lecture's is
//! meant. Each is a UUID in its lowercase hyphenated spelling, stored and sent as text.

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            sqlx::Type, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        #[schema(value_type = String, format = "uuid")]
        pub struct $name(String);

        impl $name {
            /// A new random id (UUID v4).
            pub fn new() -> Self {
                Self(uuid::Uuid::new_v4().to_string())
            }

            /// The id `text` spells, if it is one: a UUID in its lowercase hyphenated
            /// spelling, the only one Lectern writes (so one id has one spelling).
            pub fn parse(text: &str) -> Option<Self> {
                canonical_uuid(text).map(|_| Self(text.to_string()))
            }

            /// The UUID this id spells, if it is in the one spelling (an id read from a
            /// row or a message is not checked when it is read).
            pub fn uuid(&self) -> Option<uuid::Uuid> {
                canonical_uuid(&self.0)
            }

            /// The id of a UUID's 16 bytes (as a playback token carries it).
            pub fn from_uuid(uuid: uuid::Uuid) -> Self {
                Self(uuid.hyphenated().to_string())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

/// The UUID `text` spells in its lowercase hyphenated form, and no other.
fn canonical_uuid(text: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::try_parse(text)
        .ok()
        .filter(|uuid| uuid.hyphenated().to_string() == text)
}

id_type!(
    /// A lecture: one video (or audio) of a course, through its uploads and encodings.
    LectureId
);
id_type!(
    /// One encoding of a lecture's upload: the folder its playlists and segments live in.
    AssetId
);
id_type!(
    /// A course.
    CourseId
);
id_type!(
    /// An account.
    UserId
);
id_type!(
    /// A file a course's owner hands out with a course or lecture (slides, code).
    AttachmentId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_id_has_one_spelling() {
        let id = LectureId::new();
        assert_eq!(LectureId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(LectureId::parse(&id.as_str().to_uppercase()), None);
        assert_eq!(LectureId::parse(&id.as_str().replace('-', "")), None);
        assert_eq!(LectureId::parse("../etc"), None);
        assert_eq!(LectureId::parse(""), None);
    }

    #[test]
    fn ids_travel_as_plain_text() {
        let id = AssetId::parse("0b6c9f3e-2a7d-4c1e-9f00-1234567890ab").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"0b6c9f3e-2a7d-4c1e-9f00-1234567890ab\"");
        assert_eq!(serde_json::from_str::<AssetId>(&json).unwrap(), id);
    }
}
