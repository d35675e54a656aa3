//! Reading a slide's words from Tesseract: the arguments one OCR call takes, the
//! lines of its TSV output (words it is unsure of, bullets and noise left out), and
//! the slide's title told from its body. Pure parsing: `screen` runs the program.

use std::path::Path;

/// One line of text as Tesseract read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub text: String,
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
    /// Median word height, px.
    pub word_height: u32,
    pub confidence: f32,
}

/// What a slide says.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Reading {
    /// The slide's title: the largest text in the top part of the picture, when it
    /// stands out.
    pub title: Option<String>,
    /// Every line, in reading order, joined by newlines (the title included).
    pub text: String,
}

/// Words Tesseract is less sure of than this (0-100) are left out: below it, what it
/// reads on a slide is mostly a photo's texture or a window's edge.
const MIN_WORD_CONFIDENCE: f32 = 30.0;
/// Words this sure, of two letters or more, set a line's word height: icons and
/// frames read as words are taller or shorter than the text beside them.
const SOLID_CONFIDENCE: f32 = 60.0;
/// A line's first word of one character and under this share of the line's word
/// height is a bullet (read as "e", "o", "¢" or "•").
const BULLET_HEIGHT: f32 = 0.6;
/// The title starts in this top share of the picture.
const TOP_SHARE: f32 = 0.35;
/// A title's words are at least this much taller than the rest's median: slide
/// templates set titles 1.4 to 2 times the body's size, while descenders alone vary
/// word heights by up to a fifth.
const TITLE_RATIO: f32 = 1.3;
/// Lines within this share of the largest one's word height are the same size (a
/// wrapped title).
const SAME_SIZE: f32 = 0.8;
/// With nothing else on the slide, its top text is a title at this share of the
/// picture's height (a 40 px title on a 720 px slide).
const ALONE_TITLE_SHARE: f32 = 0.05;
/// A title line's mean confidence is at least this.
const TITLE_CONFIDENCE: f32 = 60.0;

/// The arguments for one picture: `tesseract <image> stdout -l <languages> --psm 3
/// tsv`. Automatic page segmentation (3) keeps a slide's blocks in reading order;
/// sparse text (11) reads titles the same but cuts paragraphs into single lines.
pub fn tesseract_args(image: &Path, languages: &str) -> Vec<String> {
    [
        &image.to_string_lossy(),
        "stdout",
        "-l",
        languages,
        "--psm",
        "3",
        "tsv",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Parses the language codes `tesseract --list-langs` prints (skipping its header
/// line and `osd`, which is orientation detection, not a language).
pub fn installed_languages(list_langs_output: &str) -> Vec<String> {
    list_langs_output
        .lines()
        .map(str::trim)
        .filter(|code| !code.is_empty() && !code.contains(char::is_whitespace))
        .filter(|code| !code.ends_with(':') && *code != "osd")
        .map(str::to_owned)
        .collect()
}

/// One word of the TSV.
#[derive(Debug, Clone)]
struct Word {
    /// Page, block, paragraph and line: the words of a line share it.
    line: [u32; 4],
    left: u32,
    top: u32,
    width: u32,
    height: u32,
    confidence: f32,
    text: String,
}

impl Word {
    /// A TSV row of level 5 (a word); structure rows and a header are `None`.
    fn parse(row: &str) -> Option<Word> {
        let fields: Vec<&str> = row.splitn(12, '\t').collect();
        let [
            level,
            page,
            block,
            par,
            line,
            _word,
            left,
            top,
            width,
            height,
            conf,
            text,
        ] = fields.as_slice()
        else {
            return None;
        };
        let number = |field: &str| field.trim().parse::<u32>().ok();
        if number(level)? != 5 {
            return None;
        }
        Some(Word {
            line: [number(page)?, number(block)?, number(par)?, number(line)?],
            left: number(left)?,
            top: number(top)?,
            width: number(width)?,
            height: number(height)?,
            confidence: conf.trim().parse().ok()?,
            text: text.split_whitespace().collect::<Vec<_>>().join(" "),
        })
    }

    /// Sure enough, and with letters: fit to measure a line's size by.
    fn solid(&self) -> bool {
        self.confidence >= SOLID_CONFIDENCE
            && self.text.chars().filter(|c| c.is_alphabetic()).count() >= 2
    }
}

/// Lines from Tesseract's TSV, in reading order; words it is unsure of or that are
/// empty are left out, and so are bullets and lines of nothing but punctuation.
pub fn parse_tsv(tsv: &str) -> Vec<Line> {
    let words = tsv
        .lines()
        .filter_map(Word::parse)
        .filter(|w| w.confidence >= MIN_WORD_CONFIDENCE && !w.text.is_empty());
    let mut lines: Vec<Vec<Word>> = Vec::new();
    for word in words {
        match lines.last_mut() {
            Some(line) if line[0].line == word.line => line.push(word),
            _ => lines.push(vec![word]),
        }
    }
    lines.into_iter().filter_map(line).collect()
}

/// A line from its words, without a leading bullet; `None` for noise.
fn line(mut words: Vec<Word>) -> Option<Line> {
    let word_height = median(words.iter().filter(|w| w.solid()).map(|w| w.height))
        .or_else(|| median(words.iter().map(|w| w.height)))?;
    if words.len() > 1 && is_bullet(&words[0], word_height) {
        words.remove(0);
    }
    let text = words
        .iter()
        .map(|w| w.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    if is_noise(&text) {
        return None;
    }
    let left = words.iter().map(|w| w.left).min()?;
    let top = words.iter().map(|w| w.top).min()?;
    let right = words.iter().map(|w| w.left + w.width).max()?;
    let bottom = words.iter().map(|w| w.top + w.height).max()?;
    let confidence = words.iter().map(|w| w.confidence).sum::<f32>() / words.len() as f32;
    Some(Line {
        text,
        left,
        top,
        width: right - left,
        height: bottom - top,
        word_height,
        confidence,
    })
}

/// A bullet: a symbol, or one small character (a dot read as a letter).
fn is_bullet(word: &Word, word_height: u32) -> bool {
    let symbol = word.text.chars().count() <= 2 && !word.text.chars().any(char::is_alphanumeric);
    let small =
        word.text.chars().count() == 1 && (word.height as f32) < BULLET_HEIGHT * word_height as f32;
    symbol || small
}

/// Fewer than two letters or digits, or mostly punctuation: a rule, a frame, an icon.
fn is_noise(text: &str) -> bool {
    let alphanumeric = text.chars().filter(|c| c.is_alphanumeric()).count();
    let visible = text.chars().filter(|c| !c.is_whitespace()).count();
    alphanumeric < 2 || 2 * alphanumeric < visible
}

fn median(values: impl Iterator<Item = u32>) -> Option<u32> {
    let mut values: Vec<u32> = values.collect();
    values.sort_unstable();
    values.get(values.len() / 2).copied()
}

/// The title and the text of a slide from its lines and its picture's height.
pub fn read(lines: &[Line], picture_height: u32) -> Reading {
    Reading {
        title: title(lines, picture_height),
        text: lines
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// The largest text in the top part, when it is clearly larger than the rest; a
/// title wrapped over adjacent lines of its size is joined with spaces.
fn title(lines: &[Line], picture_height: u32) -> Option<String> {
    let in_top = |l: &Line| (l.top as f32) < TOP_SHARE * picture_height as f32;
    let candidate = |l: &Line| in_top(l) && l.confidence >= TITLE_CONFIDENCE;
    let largest = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| candidate(l))
        .max_by_key(|(i, l)| (l.word_height, std::cmp::Reverse(*i)))
        .map(|(i, _)| i)?;
    let size = lines[largest].word_height as f32;
    let title_sized = |l: &Line| candidate(l) && l.word_height as f32 >= SAME_SIZE * size;
    let stands_out = match median(
        lines
            .iter()
            .filter(|l| !title_sized(l))
            .map(|l| l.word_height),
    ) {
        Some(rest) => size >= TITLE_RATIO * rest as f32,
        None => size >= ALONE_TITLE_SHARE * picture_height as f32,
    };
    if !stands_out {
        return None;
    }
    // The largest line and the title-sized lines right above and below it.
    let adjacent = |upper: &Line, lower: &Line| {
        title_sized(upper)
            && title_sized(lower)
            && lower.top >= upper.top + upper.height / 2
            && lower.top <= upper.top + upper.height + upper.word_height
    };
    let mut first = largest;
    while first > 0 && adjacent(&lines[first - 1], &lines[first]) {
        first -= 1;
    }
    let mut last = largest;
    while last + 1 < lines.len() && adjacent(&lines[last], &lines[last + 1]) {
        last += 1;
    }
    let words: Vec<&str> = lines[first..=last]
        .iter()
        .flat_map(|l| l.text.split_whitespace())
        .collect();
    Some(words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tesseract 5.3's TSV (`tesseract_args` with "eng") of a picture.
    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../tests/fixtures/ocr/", $name, ".tsv"))
        };
    }

    /// What a 1280x720 slide says.
    fn reading(tsv: &str) -> Reading {
        read(&parse_tsv(tsv), 720)
    }

    #[test]
    fn a_slide_title_is_read_exactly_and_the_bullets_follow() {
        let r = reading(fixture!("nyquist"));
        assert_eq!(r.title.as_deref(), Some("Sampling and the Nyquist Rate"));
        assert_eq!(
            r.text,
            "Sampling and the Nyquist Rate\n\
             A signal is sampled every T seconds\n\
             The sampling rate is fs = 1/T\n\
             Nyquist: fs must exceed twice the highest frequency\n\
             Otherwise high tones fold down as aliases"
        );
    }

    #[test]
    fn a_webcam_in_the_corner_adds_no_words() {
        let r = reading(fixture!("webcam_corner"));
        assert_eq!(r.title.as_deref(), Some("Aliasing in Practice"));
        assert_eq!(r.text.lines().count(), 4, "{}", r.text);
        assert!(r.text.contains("Wagon wheels turn backwards on film"));
        assert!(r.text.contains("Images: moire patterns on fabric"));
    }

    #[test]
    fn a_title_wrapped_on_two_lines_is_joined() {
        let r = reading(fixture!("wrapped_title_dark"));
        assert_eq!(
            r.title.as_deref(),
            Some("Quantization Noise and Dither in Audio Converters")
        );
        assert!(r.text.contains("The noise floor drops about 6 dB per bit"));
    }

    #[test]
    fn a_slide_with_all_text_one_size_has_no_title() {
        let r = reading(fixture!("no_title"));
        assert_eq!(r.title, None);
        assert!(
            r.text
                .starts_with("Each step of the method is shown below\n")
        );
        assert!(r.text.contains("Last we check the spectrum for aliases"));
    }

    #[test]
    fn a_screencast_heading_over_a_terminal_is_its_title() {
        // A picture of tests' screencast_webcam_h264_aac_720p.mp4 at 6 s.
        let r = reading(fixture!("screencast_terminal"));
        assert_eq!(r.title.as_deref(), Some("Hello world..."));
        assert!(r.text.contains("eriberto@canopus:~$ ls /usr"));
    }

    #[test]
    fn a_desktop_of_small_text_has_no_title() {
        // A picture of tests' gnome_screencast_vp8_1024x768_37s.webm at 20 s.
        let r = read(&parse_tsv(fixture!("gnome_settings")), 768);
        assert_eq!(r.title, None, "{}", r.text);
        assert!(r.text.contains("Note: may limit resolution options"));
    }

    #[test]
    fn lines_keep_sure_words_and_drop_bullets_and_noise() {
        let tsv = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n\
                   4\t1\t1\t1\t1\t0\t10\t10\t300\t30\t-1\t\n\
                   5\t1\t1\t1\t1\t1\t10\t18\t9\t9\t80.0\t¢\n\
                   5\t1\t1\t1\t1\t2\t30\t10\t100\t23\t95.0\tHello\n\
                   5\t1\t1\t1\t1\t3\t140\t10\t60\t29\t12.0\tqzx\n\
                   5\t1\t1\t1\t1\t4\t210\t10\t100\t25\t91.0\t  world \n\
                   5\t1\t1\t1\t2\t1\t10\t50\t20\t20\t90.0\t|\n\
                   5\t1\t1\t1\t2\t2\t40\t50\t20\t20\t90.0\t—\n\
                   5\t1\t2\t1\t1\t1\t10\t90\t10\t20\t90.0\t7\n\
                   5\t1\t2\t1\t2\t1\t10\t120\t40\t20\t93.0\tx=5\n";
        let lines = parse_tsv(tsv);
        assert_eq!(
            lines,
            [
                Line {
                    text: "Hello world".into(),
                    left: 30,
                    top: 10,
                    width: 280,
                    height: 25,
                    word_height: 25,
                    confidence: 93.0,
                },
                Line {
                    text: "x=5".into(),
                    left: 10,
                    top: 120,
                    width: 40,
                    height: 20,
                    word_height: 20,
                    confidence: 93.0,
                },
            ]
        );
        assert_eq!(parse_tsv(""), []);
    }

    #[test]
    fn a_lone_large_text_at_the_top_is_a_title_and_small_text_is_not() {
        let line = |text: &str, top, word_height| Line {
            text: text.into(),
            left: 50,
            top,
            width: 600,
            height: word_height + 6,
            word_height,
            confidence: 95.0,
        };
        let alone = [line("Questions?", 60, 60)];
        assert_eq!(read(&alone, 720).title.as_deref(), Some("Questions?"));
        let footnote = [line("draft, do not share", 10, 14)];
        assert_eq!(read(&footnote, 720).title, None);
        assert_eq!(read(&[], 720), Reading::default());
    }

    #[test]
    fn tesseract_is_asked_for_tsv_in_the_given_languages() {
        assert_eq!(
            tesseract_args(Path::new("/scratch/slide-3.png"), "eng+deu"),
            [
                "/scratch/slide-3.png",
                "stdout",
                "-l",
                "eng+deu",
                "--psm",
                "3",
                "tsv"
            ]
        );
    }

    #[test]
    fn installed_languages_skip_the_header_and_osd() {
        let out = "List of available languages in \"/usr/share/tesseract-ocr/5/tessdata/\" (3):\n\
                   deu\neng\nosd\n";
        assert_eq!(installed_languages(out), ["deu", "eng"]);
        assert_eq!(installed_languages(""), Vec::<String>::new());
    }
}
