"""Turning ATT&CK prose (and LLM answers) into candidate concept words.

Markdown links keep their text, citations/URLs/code spans go, words are lowercased, plurals are
folded to the singular, and stopwords — English plus ATT&CK's boilerplate ("adversaries may ...") —
are dropped. ``variant_key`` groups forms of one word (flood/flooding/floods) so a graph never holds
two spellings of the same concept.
"""

from __future__ import annotations

import re

_ATTACK_LINK = re.compile(r"\[[^\]]*\]\(https?://attack\.mitre\.org/[^)]*\)s?")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_PORT_SPEC = re.compile(r"\(\s*\d+/(?:tcp|udp)[^)]*\)", re.I)
_BULLET_BREAK = re.compile(r"\n[ \t]*[*-][ \t]+")
_CITATION = re.compile(r"\(Citation:[^)]*\)")
_URL = re.compile(r"https?://\S+")
_CODE = re.compile(r"<code>.*?</code>|`[^`]*`", re.S)
_TAG = re.compile(r"<[^>]+>")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
WORD_RE = re.compile(r"^[a-z][a-z0-9]*$")
_TOKEN = re.compile(r"[a-z][a-z0-9]*(?:'[a-z]+)?")

# English function words (our own list; importing one from scikit-learn would cost a second per CLI call).
ENGLISH_STOPWORDS = frozenset("""
a about above after again against all almost alone along already am among an and another any anyone
anything anywhere are around as at back be became because been before being below beside besides
between beyond both but by cannot could did do does doing done down during each either else elsewhere
enough ever every everyone everything everywhere few first for former from further had has have having
he hence her here hers herself him himself his how i if in into is it its itself just last later
latter least less many me meanwhile might mine more most mostly much must my myself neither never
nevertheless next no nobody none nor not nothing now nowhere of off on once only onto or other others
otherwise our ours ourselves out over own per quite rather re same see seem seemed seeming seems she
should since so some somehow someone something sometime sometimes somewhere such than that the their
theirs them themselves then there thereafter thereby therefore therein these they this those through
throughout thru to together too toward towards under until up upon us very was we were what whatever
when whenever where whereas wherever whether which while who whoever whole whom whose why will with
within without would yet you your yours yourself yourselves
""".split())

# ATT&CK's house style and generic English that carries no security meaning.
DOMAIN_STOPWORDS = frozenset("""
adversary adversarie technique sub subtechnique mitre att ck attack enterprise procedure
may might can could would should must will shall also often typically commonly usually generally
use used using usage utilize utilized utilizing leverage leveraged leveraging employ employed
ex eg ie etc e g i via like example instance including include included includes
different various variety certain specific particular similar several many much number numerous
able attempt attempted attempting perform performed performing conduct conducted conducting
order make made way ways likely potentially possibly additionally additional known
type form forms kind set well need needs needed new one two three single multiple
rather within without whether however although though thus therefore rely relies
provide provided providing allow allows allowed enable enabled enables cause caused causes
take taken taking taken give given get gets got obtain obtained obtaining gain gained gaining
occur occurs occurred become becomes result resulting resulted lead leads help helps
related relating relevant regarding based depending depend depends consider considered
even still less least like likewise furthermore moreover especially particularly
monitor monitoring detection detect detected defender defenders organization organizations
data information activity activities behavior behaviors behaviour event events
purpose purposes goal goals effort efforts case cases time times part parts point points
n d s t r x y id ids
achieve exist exists show showed shown document documented generate generated produce produced
reveal revealed seek harvest align develop developed establish establishing recover trace traced
high higher highest low lower small smaller large larger largest worst best powerful prominent major
difficult easy original broad generic custom usable risky initial open technical operational direct
outside far near extent aspect amount increase decrease capability opportunity search term org
collection knowledge option sign content material controlled spread target targeted targeting
brought actual actually entire whole certain sure important significant sufficient enough due
real available common commonly frequently frequent typical regular normal simple simply easily
apply applied applies applying identify identified identifying determine determined fashion manner
aid aids assist consist consists contain contains contained involve involves involving means
post pre prior previous previously following follow follows subsequent subsequently later
victim victims user users individual individuals party parties entity entities external internal
series condition reduce send sent wild accomplish focus question greater bank rent global build
profile incident impose old native name unique solution current logical acquire check method execute
feature interaction place facing addition office tendency overlap far beyond instead despite
across eliminate day opt along around toward upon
active sluggish critical tool match validity circumstance mechanism administrative
confirm persistent register movement valid compute variable effectiveness advantage trigger escalate
lateral rogue dependent nature zero
""".split())

# Digits make a token an identifier ("password01", "t1498"), except for these protocol names.
_DIGIT_WORDS = frozenset("""
ipv4 ipv6 http2 http3 s3 smb2 smb3 snmpv3 tls13 sha256 md5 x509 dot1x
""".split())
MAX_CONCEPT_LEN = 14

STOPWORDS = ENGLISH_STOPWORDS | DOMAIN_STOPWORDS

# Words whose trailing "s" is not a plural.
_KEEP_S = frozenset("""
dos ddos os macos ios https tls dns sms aws gcp saas iaas paas ics nas smb windows access address
process analysis status bonus virus campus bus gas plus thus perhaps always various previous
malicious numerous anonymous synchronous asynchronous continuous ubiquitous autonomous
its this his has was is as us yes less unless across series species
""".split())


def clean_markup(text: str) -> str:
    """Drop citations, URLs, code spans, tags and port specs from ATT&CK markdown.

    Links to other ATT&CK techniques go entirely (their names describe the other technique, not this
    one); other links keep their text. A bulleted list becomes one sentence, so its items co-occur.
    """
    text = _CITATION.sub(" ", text)
    text = _ATTACK_LINK.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _PORT_SPEC.sub(" ", text)
    text = _BULLET_BREAK.sub(" ; ", text)
    text = _CODE.sub(" ", text)
    text = _URL.sub(" ", text)
    text = _TAG.sub(" ", text)
    return text


def singular(word: str) -> str:
    """Fold an English plural to the singular with a few suffix rules (light lemmatisation)."""
    if len(word) < 4 or word in _KEEP_S or not word.endswith("s"):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return word[:-2]
    if word.endswith(("ss", "us", "is", "os")):
        return word
    return word[:-1]


_NOUN_LY = frozenset("anomaly reply supply assembly family poly apply rely".split())


def tokens(text: str) -> list[str]:
    """Lowercase, singular, stopword-free candidate words (no numbers, no one-letter tokens, no -ly adverbs)."""
    out = []
    for raw in _TOKEN.findall(text.lower()):
        raw = raw.split("'")[0]
        if len(raw) < 2 or raw in STOPWORDS:
            continue
        if raw.endswith("ly") and raw not in _NOUN_LY:
            continue
        if len(raw) > MAX_CONCEPT_LEN + 1 or (any(ch.isdigit() for ch in raw) and raw not in _DIGIT_WORDS):
            continue
        word = singular(raw)
        if word in STOPWORDS or len(word) < 2 or len(word) > MAX_CONCEPT_LEN:
            continue
        out.append(word)
    return out


def sentences(text: str) -> list[list[str]]:
    """Token lists per sentence of cleaned ATT&CK prose (bullets and line breaks split sentences too)."""
    cleaned = clean_markup(text)
    out = []
    for chunk in _SENTENCE.split(cleaned):
        words = tokens(chunk)
        if words:
            out.append(words)
    return out


_VARIANT_SUFFIXES = ("ification", "ifier", "ified", "ify", "ation", "ion", "ing", "ery", "er", "or", "ed")


def variant_key(word: str) -> str:
    """A crude stem that makes flood/flooding/flooded and scan/scanning/scanner collide."""
    for suffix in _VARIANT_SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            stem = word[: -len(suffix)]
            if len(stem) >= 3 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
                stem = stem[:-1]
            return stem
    return word
