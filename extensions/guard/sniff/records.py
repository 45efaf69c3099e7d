"""The shape of each kind's records, and which lines of a text may be one."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator

_NUM = r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"
_RE_INT = re.compile(r"^\d+$")
_RE_NUM = re.compile(rf"^{_NUM}$")
_RE_BASES = re.compile(r"^[ACGTNacgtn]+$")
_RE_ALT = re.compile(
    r"^(\.|\*|<[^<>\s]+>|[ACGTNacgtn*]+|[ACGTNacgtn]*[\[\]][^\s\[\]]+[\[\]][ACGTNacgtn]*)"
    r"(,(\*|<[^<>\s]+>|[ACGTNacgtn*]+|[ACGTNacgtn]*[\[\]][^\s\[\]]+[\[\]][ACGTNacgtn]*))*$"
)
_RE_QUAL = re.compile(rf"^(\.|{_NUM})$")
_RE_FILTER = re.compile(r"^(\.|PASS|[A-Za-z_][\w.-]*(;[A-Za-z_][\w.-]*)*)$")
_RE_INFO = re.compile(r"^(\.|[A-Za-z_][\w.]*(=[^;\t]*)?(;[A-Za-z_][\w.]*(=[^;\t]*)?)*)$")
_RE_FORMAT = re.compile(r"^[A-Za-z_][\w]*(:[A-Za-z_][\w]*)*$")
_RE_CHROM = re.compile(r"^[^\s#<>][^\s<>]*$")
_RE_GT = re.compile(r"^(\.|\d+)([/|](\.|\d+))+$")
_RE_CIGAR = re.compile(r"^(\*|(\d+[MIDNSHPX=])+)$")
_RE_SEQ = re.compile(r"^(\*|[A-Za-z=.]+)$")
_RE_SEQ_READ = re.compile(r"^[ACGTNacgtn.]+$")
_RE_ALLELE = re.compile(r"^([ACGTNacgtn]+|0|\.|-|<[^<>\s]+>|[IDid])$")
_RE_ID = re.compile(r"^\S+$")


def is_vcf_record(fields: list[str]) -> bool:
    """A VCF/gVCF/pVCF data line, split on tabs (sites-only lines count too)."""
    if len(fields) < 8 or len(fields) == 9:
        return False
    chrom, pos, _id, ref, alt, qual, filt, info = fields[:8]
    if not (pos.isdigit() and (filt in (".", "PASS") or filt[:1].isalpha() or filt[:1] == "_")):
        return False  # the cheap tests first: most lines of a results table fail here
    if not (_RE_CHROM.match(chrom) and _RE_INT.match(pos)):
        return False
    if not ((_RE_BASES.match(ref) or ref == ".") and _RE_ALT.match(alt)):
        return False
    if not (_RE_QUAL.match(qual) and _RE_FILTER.match(filt) and _RE_INFO.match(info)):
        return False
    if len(fields) >= 10:
        if not _RE_FORMAT.match(fields[8]):
            return False
    return True


def is_pvar_record(fields: list[str]) -> bool:
    """A PLINK 2 .pvar line with only CHROM POS ID REF ALT (VCF's first five columns)."""
    return (
        len(fields) == 5
        and bool(_RE_CHROM.match(fields[0]) and _RE_INT.match(fields[1]))
        and bool(_RE_BASES.match(fields[3]) and _RE_ALT.match(fields[4]))
        and fields[4] != "."
    )


def is_sam_record(fields: list[str]) -> bool:
    if len(fields) < 11:
        return False
    qname, flag, rname, pos, mapq, cigar, rnext, pnext, tlen, seq, qual = fields[:11]
    if not (_RE_ID.match(qname) and _RE_INT.match(flag) and int(flag) < 4096):
        return False
    if not (_RE_ID.match(rname) and _RE_INT.match(pos) and _RE_INT.match(mapq)):
        return False
    if not (_RE_CIGAR.match(cigar) and _RE_ID.match(rnext) and _RE_INT.match(pnext)):
        return False
    if not re.match(r"^-?\d+$", tlen) or not _RE_SEQ.match(seq):
        return False
    return qual == "*" or (seq != "*" and len(qual) == len(seq))


def is_bim_record(fields: list[str]) -> bool:
    return (
        len(fields) == 6
        and bool(_RE_CHROM.match(fields[0]) and _RE_ID.match(fields[1]))
        and bool(_RE_NUM.match(fields[2]) and _RE_INT.match(fields[3]))
        and bool(_RE_ALLELE.match(fields[4]) and _RE_ALLELE.match(fields[5]))
    )


def is_fam_record(fields: list[str]) -> bool:
    # FID and IID are identifiers; father and mother are an IID or 0.
    if len(fields) != 6 or fields[4] not in ("0", "1", "2"):
        return False
    if not (_RE_NUM.match(fields[5]) or fields[5] == "NA"):
        return False
    if _RE_NUM.match(fields[0]) and _RE_NUM.match(fields[1]) and _RE_NUM.match(fields[2]):
        return False  # an all-number row is a numeric table, not a pedigree
    return (
        fields[2] == "0"
        or fields[3] == "0"
        or fields[2] == fields[0]
        or bool(re.search(r"[A-Za-z]", fields[2]))
    )


def is_genotype_row(fields: list[str], min_calls: int = 8) -> bool:
    """A row holding many individual genotype calls (0/1, 1|1, ./., 0/1:30:99)."""
    calls = 0
    for f in fields:
        if _RE_GT.match(f.split(":", 1)[0]):
            calls += 1
    return calls >= min_calls and calls >= len(fields) // 2


_FASTQ = re.compile(r"^@[^\n]+\n([ACGTNacgtn.]+)\r?\n\+[^\n]*\n([^\n]+?)\r?$", re.M)
_VCF_HEADERS = ("##fileformat=VCF", "#CHROM\tPOS\tID\tREF\tALT")
_SAM_HEADERS = ("@HD\tVN:", "@SQ\tSN:", "@RG\tID:")


def _record_kind(line: str) -> str | None:
    fields = line.split("\t")
    if len(fields) >= 8 and is_vcf_record(fields):
        return "vcf"
    if len(fields) >= 11 and is_sam_record(fields):
        return "sam"
    if len(fields) == 5 and is_pvar_record(fields):
        return "plink"
    ws = line.split() if len(fields) < 6 else fields
    if len(ws) == 6 and (is_bim_record(ws) or is_fam_record(ws)):
        return "plink"
    if len(ws) >= 8 and line.count("/") + line.count("|") >= 8 and is_genotype_row(ws):
        return "genotype-table"
    return None


# Which lines may be records.
# `_record_kind` is asked only about lines that `_record_rules` finds (at C speed over the
# whole text); the others are shown not to be records by what each rule of `_record_kind`
# needs before anything else:
# - VCF: 8 tab-separated fields or more, POS all digits, FILTER beginning with '.' or a letter
#   ('_' and PASS included);
# - SAM: 11 tab-separated fields or more, FLAG all digits, CIGAR beginning as one does;
# - PLINK 2 .pvar: exactly 5 tab-separated fields, POS all digits;
# - PLINK .bim / .fam: exactly 6 tab-separated fields, or 6 whitespace-separated ones;
# - a table of genotype calls: 8 '/' or '|' or more (looked for only when the text has 8).
# `\d`, `\w` and `\s` are Unicode's, as in the record rules. Lines are what str.splitlines()
# makes of the text when its only line breaks are "\n" and "\r\n"; any other text is checked
# line by line. Skipping a line that is no record changes nothing, so the finding is the one
# every line's check gives (tests/unit/extensions/guard/test_sniff.py compares them).
_ODD_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
# the prefilter can be switched off to compare with the check of every line
PREFILTER = True


@functools.cache
def _record_rules(calls: bool) -> tuple[re.Pattern, re.Pattern]:
    f = r"[^\r\n\t]*+\t"  # a tab-separated field and its tab
    end = r"[^\r\n\t]*+(?![^\r\n])"  # the line's last field
    sp = r"[^\S\r\n]"  # whitespace within a line
    rules = (
        # field 0, then POS / FLAG all digits: .pvar, .bim/.fam, SAM (a CIGAR), VCF (FILTER)
        rf"{f}(?:\d++\t{f}{f}(?:{end}|{f}(?:{end}|(?=\*|\d++[MIDNSHPX=]){f * 5}"
        rf"|{f}(?:\.|[^\W\d])))"
        rf"|(?!\d++\t){f * 4}{end})"  # .bim/.fam
        rf"|{sp}*+(?:\S++{sp}++){{5}}\S++{sp}*+(?![^\r\n])"  # .bim/.fam, whitespace-separated
    )
    if calls:
        rules += r"|(?:[^\r\n/|]*+[/|]){8}"
    return re.compile(rf"(?={rules})[^\r\n]*"), re.compile(rf"\n(?={rules})([^\r\n]*)")


def _record_candidates(text: str) -> Iterable[str]:
    """The lines of `text` that may be records, in order (see `_record_rules`)."""
    if any(c in text for c in _ODD_BREAKS) or text.count("\r") != text.count("\r\n"):
        return text.splitlines()
    first, rest = _record_rules(text.count("/") + text.count("|") >= 8)
    return _matched_lines(text, first, rest)


def _matched_lines(text: str, first: re.Pattern, rest: re.Pattern) -> Iterator[str]:
    m = first.match(text)
    if m:
        yield m.group()
    for m in rest.finditer(text):
        yield m.group(1)
