//! The language a course is taught in: a two-letter ISO 639-1 code from the list of
//! languages Lectern can read on screen, with the name of Tesseract's data for it.

use serde::{Deserialize, Serialize};

/// ISO 639-1 code and Tesseract's language data, for each language offered.
const LANGUAGES: &[(&str, &str)] = &[
    ("ar", "ara"),
    ("cs", "ces"),
    ("da", "dan"),
    ("de", "deu"),
    ("el", "ell"),
    ("en", "eng"),
    ("es", "spa"),
    ("fi", "fin"),
    ("fr", "fra"),
    ("he", "heb"),
    ("hi", "hin"),
    ("hu", "hun"),
    ("id", "ind"),
    ("it", "ita"),
    ("ja", "jpn"),
    ("ko", "kor"),
    ("nl", "nld"),
    ("no", "nor"),
    ("pl", "pol"),
    ("pt", "por"),
    ("ro", "ron"),
    ("ru", "rus"),
    ("sv", "swe"),
    ("tr", "tur"),
    ("uk", "ukr"),
    ("vi", "vie"),
    ("zh", "chi_sim"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "en")]
/// An index into [`LANGUAGES`].
pub struct CourseLanguage(usize);

impl CourseLanguage {
    pub const ENGLISH: CourseLanguage = CourseLanguage(5);

    /// One of the offered codes (`en`, `de`, …), case-insensitive.
    pub fn parse(code: &str) -> Option<Self> {
        let code = code.trim().to_ascii_lowercase();
        LANGUAGES
            .iter()
            .position(|(iso, _)| *iso == code)
            .map(CourseLanguage)
    }

    pub fn as_str(self) -> &'static str {
        LANGUAGES[self.0].0
    }

    /// The name of Tesseract's data for it (`eng`, `deu`).
    pub fn tesseract(self) -> &'static str {
        LANGUAGES[self.0].1
    }

    /// Every code offered, for error messages and forms.
    pub fn codes() -> impl Iterator<Item = &'static str> {
        LANGUAGES.iter().map(|(iso, _)| *iso)
    }
}

impl TryFrom<String> for CourseLanguage {
    type Error = String;

    fn try_from(code: String) -> Result<Self, Self::Error> {
        CourseLanguage::parse(&code).ok_or_else(|| {
            format!(
                "language must be one of {}",
                CourseLanguage::codes().collect::<Vec<_>>().join(", ")
            )
        })
    }
}

impl From<CourseLanguage> for String {
    fn from(l: CourseLanguage) -> String {
        l.as_str().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_to_their_ocr_data_and_others_are_refused() {
        assert_eq!(CourseLanguage::parse("DE").unwrap().tesseract(), "deu");
        assert_eq!(
            CourseLanguage::parse(" en ").unwrap(),
            CourseLanguage::ENGLISH
        );
        assert_eq!(CourseLanguage::ENGLISH.tesseract(), "eng");
        assert!(CourseLanguage::parse("xx").is_none());
        assert!(CourseLanguage::parse("english").is_none());
        let err = CourseLanguage::try_from("klingon".to_string()).unwrap_err();
        assert!(err.contains("en, es"), "{err}");
        let json: CourseLanguage = serde_json::from_str("\"fr\"").unwrap();
        assert_eq!(serde_json::to_string(&json).unwrap(), "\"fr\"");
    }
}
