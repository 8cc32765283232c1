"""Offline idea and article writing from a seeded template grammar.

Every sentence comes from a role-specific template ("definition", "tip", "caution", ...)
whose `[a|b|c]` alternatives and `{slot}`s are filled from the idea's keywords and the
current heading, with the choice seeded by (idea title, section, paragraph index). Rich
alternatives plus heading-specific slots keep two articles from sharing sentences, while
the same idea always yields the same text.
"""

from __future__ import annotations

import hashlib
import html
import random
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from ai.base import ArticleOut, ClusterIn, IdeaIn, IdeaOut, InvalidAIOutput, OutlineSection
from ai.local_cluster import fixed_case, title_case

CONTENT_TYPES: tuple[str, ...] = ("guide", "how-to", "listicle", "comparison", "review", "checklist")
YEAR = date.today().year

_ALT = re.compile(r"\[([^\[\]]*)\]")
_SLOT = re.compile(r"\{(\w+)\}")
_QUESTION_START = frozenset("what why when where which who whom is are do does can should will would".split())
_IMPERATIVES = frozenset(
    "start learn invest build track use ask review keep choose avoid set make find try plan "
    "check get focus prepare put refine take pick follow protect adjust write compare test measure match "
    "stay define note clean store buy".split()
)
_DOUBLED = {"repot": "repotting", "stop": "stopping", "shop": "shopping", "plan": "planning",
            "get": "getting", "set": "setting", "put": "putting", "cut": "cutting", "run": "running",
            "begin": "beginning", "swap": "swapping", "prep": "prepping", "fit": "fitting",
            "sit": "sitting", "skip": "skipping", "trim": "trimming", "dig": "digging"}


def seeded(*parts: object) -> random.Random:
    """A Random seeded from a stable digest of `parts` (never Python's salted hash())."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def capitalise(text: str) -> str:
    """Upper-case the first letter only, leaving acronyms and names (even "iPhone") alone."""
    if text[1:2].isupper():
        return text
    return text[:1].upper() + text[1:]


def fill(template: str, rng: random.Random, slots: dict[str, str]) -> str:
    """Expand `[a|b]` alternatives, then `{slot}`s; `{Slot}` capitalises the value."""
    text = _ALT.sub(lambda m: rng.choice(m.group(1).split("|")), template)

    def slot(match: re.Match[str]) -> str:
        key = match.group(1)
        value = slots[key.lower()]
        return capitalise(value) if key[0].isupper() else value

    return capitalise(re.sub(r"\s+", " ", _SLOT.sub(slot, text)).strip())


def gerund_phrase(words: list[str]) -> str:
    """"potty train a puppy" -> "potty training a puppy": the -ing goes on the verb."""
    if len(words) > 1 and words[0] == "potty":
        return " ".join([words[0], gerund(words[1]), *words[2:]])
    return " ".join([gerund(words[0]), *words[1:]])


def gerund(verb: str) -> str:
    """The -ing form of a verb, good enough for the verbs that start "how to" searches."""
    if verb in _DOUBLED:
        return _DOUBLED[verb]
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")):
        return verb[:-1] + "ing"
    return verb + "ing"


def _lower_word(word: str) -> str:
    """Lower-case a title-cased word but keep acronyms and brand casing (EV, iPhone)."""
    parts = word.split("-")
    return "-".join(p.lower() if p[1:] == p[1:].lower() and p != "I" else p for p in parts)


def display_lower(text: str) -> str:
    """A heading as it would read mid-sentence."""
    return fixed_case(" ".join(_lower_word(w) for w in text.split()))


def subject_of(heading: str) -> str:
    """Turn a heading into a phrase that can sit inside a sentence ("How to Tune a Guitar"
    -> "tuning a guitar", "What Is Net Metering?" -> "net metering")."""
    text = re.sub(r"^(?:step|tip|part|day)\s+\d+\s*[:.)-]\s*", "", heading.strip(), flags=re.I)
    text = re.sub(r"^\d+[.)]\s*", "", text)
    head, _, tail = text.partition(":")
    text = (head if len(head.split()) > 2 or not tail.strip() else tail).strip().rstrip("?!.")
    words = display_lower(text).split()
    if len(words) > 2 and words[0] == "how" and words[1] == "to":
        return gerund_phrase(words[2:])
    if len(words) > 2 and words[0] in _QUESTION_START and words[1] in ("is", "are"):
        return " ".join(words[2:])
    return " ".join(words) or display_lower(heading)


def sentence_subject(heading: str) -> str:
    """Like subject_of, but imperative headings become gerund phrases
    ("Review and Adjust Regularly" -> "reviewing and adjusting regularly")."""
    words = subject_of(heading).split()
    if not words or words[0] not in _IMPERATIVES:
        return " ".join(words)
    return " ".join(gerund(w) if i == 0 or (words[i - 1] == "and" and w in _IMPERATIVES) else w
                    for i, w in enumerate(words))


def keyword_subject(keyword: str, gerunds: bool = True) -> str | None:
    """A keyword as a phrase for sentences ("how to x" -> gerund unless `gerunds` is False,
    which titles and headings need), or None for other questions."""
    words = keyword.lower().split()
    if not words:
        return None
    if gerunds and words[:2] == ["how", "to"] and len(words) > 2:
        return fixed_case(gerund_phrase(words[2:]))
    if words[0] in _QUESTION_START or words[0] == "how":
        return None
    while len(words) > 1 and words[0] in ("best", "top", "the"):
        words = words[1:]
    while len(words) > 1 and words[-1] in ("review", "explained", "guide", "tips", "ideas"):
        words = words[:-1]
    return fixed_case(" ".join(words))


def keyword_question(keyword: str) -> str | None:
    """A question-shaped keyword as an FAQ question ("how to x" -> "How do you x?")."""
    words = keyword.lower().split()
    if words[:2] == ["how", "to"] and len(words) > 2:
        return capitalise(fixed_case(" ".join(["how do you", *words[2:]]))) + "?"
    if words and (words[0] in _QUESTION_START or words[0] == "how"):
        return capitalise(fixed_case(" ".join(words).rstrip("?"))) + "?"
    return None


def join_phrases(items: Iterable[str]) -> str:
    """"a, b and c" for prose lists."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _parse_sections(text: str) -> dict[str, list[str]]:
    """"## name" opens a section; unindented lines start an entry, indented lines continue it."""
    sections: dict[str, list[str]] = {}
    entries: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("## "):
            entries = sections.setdefault(line[3:].strip(), [])
        elif line.startswith(" "):
            entries[-1] += " " + line.strip()
        else:
            entries.append(line.strip())
    return sections


def _parse_grammar(text: str) -> dict[str, tuple[str, ...]]:
    """Role name -> its sentence templates."""
    return {role: tuple(entries) for role, entries in _parse_sections(text).items()}


def _parse_outlines(text: str) -> dict[str, tuple[tuple[str, tuple[str, ...]], ...]]:
    """Content type -> (H2 template, H3 templates) rows written as "H2 | H3 | H3"."""
    outlines = {}
    for kind, entries in _parse_sections(text).items():
        rows = [tuple(part.strip() for part in entry.split("|")) for entry in entries]
        outlines[kind] = tuple((row[0], row[1:]) for row in rows)
    return outlines


# --------------------------------------------------------------------------- ideas

_TITLES: dict[str, tuple[str, ...]] = {
    "guide": (
        "The Complete Guide to {S} in {Y}",
        "{S}: Everything You Need to Know",
        "A Beginner's Guide to {S}",
        "{S} Explained: A Practical Guide",
        "The Ultimate {T} Guide for Beginners",
        "Understanding {S}: What Actually Matters",
        "{T} 101: A Plain-English Guide to {S}",
        "The No-Nonsense Guide to {S}",
    ),
    "how-to": (
        "How to Get Started with {S}",
        "How to Get Better Results with {S}",
        "How to Master {S}: A Step-by-Step Plan",
        "{S} Step by Step: A Practical How-To",
        "How to Make the Most of {S} in {Y}",
        "How to Approach {S} Without the Guesswork",
        "A Step-by-Step Plan for {S}",
    ),
    "listicle": (
        "{N} Essential Tips for {S}",
        "{N} Common {T} Mistakes and How to Avoid Them",
        "{N} Things Nobody Tells You About {S}",
        "{N} Smart Ways to Get More from {S}",
        "{N} Lessons We Learned About {S}",
        "{N} Practical Ideas for {S} in {Y}",
    ),
    "comparison": (
        "{S} Compared: Which Option Is Right for You?",
        "Comparing {T} Options: What Really Makes a Difference",
        "{T} Compared: Pros, Cons and Best Picks for {Y}",
        "{S} Head to Head: How the Main Options Stack Up",
        "Choosing Between {T} Options: An Honest Comparison",
    ),
    "review": (
        "An Honest Review of {S} for {Y}",
        "{S} Review: What We Learned After Real-World Use",
        "{T} Reviewed: The Good, the Bad and the Verdict",
        "Is It Worth It? A Hands-On Review of {S}",
        "{S}: A Long-Term Review",
    ),
    "checklist": (
        "The Essential {T} Checklist",
        "{S} Checklist: {N} Steps Before You Start",
        "Your {Y} Checklist for {S}",
        "The Complete {S} Checklist for Beginners",
        "A Printable Checklist for {S}",
    ),
}

# Per content type, one H2 per line followed by its H3 pool, separated by " | ".
# {T} is the topic, {S} the idea's focus subject, {S2} a second subject.
_OUTLINES = _parse_outlines("""
## guide
Understanding {T} | A Plain-English Definition | The Case for {S} | Common Misconceptions
Key Concepts Behind {S} | The Core Terms to Know | How the Pieces Fit Together | Lessons from Experience
Getting Started with {S} | Setting Realistic Goals | The Essentials for Day One | Your First Week
Choosing the Right Approach | Matching {S2} to Your Goals | Budget Versus Quality | Knowing When to Upgrade
A Step-by-Step Plan for {T} | Preparing the Groundwork | Building the Core Routine
  | Reviewing Your Results
Mistakes Beginners Make | Doing Too Much Too Soon | Ignoring the Basics of {S} | Copying Someone Else's Setup
Advanced Tips for {S} | Fine-Tuning the Details | Building Long-Term Consistency
  | Learning from Experienced Practitioners
Tools and Resources Worth Knowing | Essential Tools for {T} | Helpful Communities | Further Reading on {S2}
Costs, Time and Effort | A Realistic Budget for {S} | The Time Results Take | Saving Money Without Cutting Corners
Keeping It Sustainable | Simple Maintenance Habits | Avoiding Burnout | Planning the Next Stage
## how-to
Preparing to Begin | Tools and Materials | Setting a Clear Goal for {S} | Checking Your Starting Point
Step: Prepare for {S} | Gathering the Essentials | Making Time and Space | Learning the Vocabulary of {T}
Step: Learn the Fundamentals | The Core Technique | Practising Safely | Spotting Early Progress
Step: Put {S} into Practice | A Simple First Attempt | Adjusting as You Go | Recording What Works
Step: Refine Your Technique | Small Changes with Big Effects | Getting Honest Feedback
  | Bringing {S2} into the Mix
Step: Build a Routine Around {T} | Choosing a Realistic Schedule | Staying Motivated
  | Tracking Progress Over Time
Troubleshooting Common Problems | Breaking Through a Plateau | Fixing Frequent Errors with {S}
  | Knowing When to Ask for Help
Going Further with {T} | Next-Level Techniques | Exploring {S2} | Setting New Goals
Safety and Good Practice | Protecting Your Time and Money | Avoiding Avoidable Risks | Good Habits for {S}
## listicle
Start with a Clear Goal for {S} | The Case for Goals | Writing Down What Success Looks Like
Learn the Basics of {T} First | The Fundamentals Worth Mastering | Typical Beginner Errors
Invest in Quality Where It Counts | Upgrades That Pay Off | Savings That Make Sense
Build a Simple Routine | Keeping the Routine Short | Making {S} a Habit
Track Your Progress | Simple Progress Markers | Reviewing Your Notes
Learn from Common Mistakes | Mistakes with {S2} | Turning Setbacks into Lessons
Use {S2} to Your Advantage | Quick Wins | Long-Term Benefits
Ask the Community for Help | Finding Good Advice | Filtering Out Bad Advice
Review and Adjust Regularly | A Monthly Check-In | Knowing When to Change Course
Keep It Enjoyable | Avoiding Burnout with {T} | Celebrating Small Wins
## comparison
The Case for Comparing {T} Options | The Cost of a Wrong Choice | The Shape of a Fair Comparison
The Main Options at a Glance | Entry-Level Choices | Mid-Range Choices | Premium Choices
Key Criteria for Comparing {S} | Performance and Results | Cost and Long-Term Value | Ease of Use
{S} Versus {S2} | Shared Strengths | Key Differences | Matching Each Option to a Reader
Strengths and Weaknesses | Standout Advantages | Common Drawbacks | Deal-Breakers to Watch For
The Best Fit for Beginners | Forgiving Options | Simple Setups for {T}
The Best Fit for Experienced Users | Options with More Control | Upgrades Worth Considering
Cost Over Time | Up-Front Costs | Running and Maintenance Costs | Resale and Longevity
Our Verdict on {T} | The Best Overall Pick | The Best Pick on a Budget | The Best Pick for Specific Needs
## review
Our Review Approach | Our Review Criteria | Our Testing of {S} | The Intended Reader
First Impressions of {S} | The Setup Process | Overall Finish and Presentation
Performance in Everyday Use | Typical Day-to-Day Results | Performance Under Pressure
  | Consistency Over Several Weeks
Quality and Durability | Materials and Craftsmanship | Wear After Regular Use
Value for Money | The Up-Front Price | Hidden and Ongoing Costs | Cheaper Alternatives to {S}
The Highlights | Standout Strengths | Small Touches That Help
The Weak Spots | Frustrations We Noticed | Features We Missed
A Comparison with {S2} | The Strengths of {S} | The Strengths of the Alternative
The Ideal Buyer | Ideal Readers | Readers Who Should Look Elsewhere
The Final Verdict on {T} | Our Overall Rating | Buying Advice
## checklist
The Case for a {T} Checklist | Fewer Forgotten Steps | Calmer Decisions
The Planning Checklist | Goals and Priorities | Budget and Timing | Research on {S}
The Equipment and Supplies Checklist | The Must-Haves | Nice-to-Have Extras | Things You Can Skip
A Preparation Checklist for {S} | The Week Before | The Day Before | Final Checks
The First-Session Checklist | Starting Calmly | Noting Your Baseline
The Weekly Review Checklist | Progress Markers | Adjustments to Try | Open Questions About {S2}
The Troubleshooting Checklist | Handling Setbacks | Quick Fixes to Try First
The Long-Term Maintenance Checklist | Monthly Tasks | Seasonal Tasks | An Annual Review of {T}
A Printable Summary | The One-Page Version | Using the Checklist Day to Day
""")

_DESCRIPTIONS: dict[str, str] = {
    "guide": "A practical guide to {s} that explains {a} and how to avoid the usual beginner mistakes.",
    "how-to": "A step-by-step walkthrough of {s}, from {a} to {b}, with troubleshooting advice along the way.",
    "listicle": "A list of practical, tested tips for {s}, including {a} and {b}.",
    "comparison": "A side-by-side comparison of {t} options that weighs {a} and {b} to help readers choose.",
    "review": "An honest, hands-on review of {s} covering {a}, {b} and who should choose it.",
    "checklist": "A ready-to-use checklist for {s} covering {a}, {b} and the long-term follow-up.",
}


def _subjects(keywords: tuple[str, ...], topic: str) -> list[str]:
    """Noun-phrase forms of the cluster's keywords (the topic when none qualifies)."""
    subjects = [s for s in (keyword_subject(k, gerunds=False) for k in keywords) if s]
    return list(dict.fromkeys(subjects)) or [topic.lower()]


def _outline(kind: str, rng: random.Random, slots: dict[str, str]) -> tuple[OutlineSection, ...]:
    """6-8 H2s from the type's pool (kept in their logical order), each with 2-3 H3s."""
    pool = _OUTLINES[kind]
    picked = sorted(rng.sample(range(len(pool)), k=min(len(pool), rng.randint(6, 8))))
    sections = []
    steps = 0
    for number, index in enumerate(picked, start=1):
        h2, h3_pool = pool[index]
        h3s = sorted(rng.sample(range(len(h3_pool)), k=min(len(h3_pool), rng.randint(2, 3))))
        heading = fill(h2, rng, slots)
        if kind == "listicle":
            heading = f"{number}. {heading}"
        elif heading.startswith("Step: "):  # steps are numbered after sampling so they never skip
            steps += 1
            heading = f"Step {steps}: {heading[6:]}"
        sections.append(OutlineSection(heading, tuple(fill(h3_pool[i], rng, slots) for i in h3s)))
    return tuple(sections)


def _idea(cluster: ClusterIn, kind: str, template: str, focus: int, subjects: list[str]) -> IdeaOut:
    """One idea from a title template and a focus keyword (everything else seeded from them)."""
    rng = seeded("idea", cluster.name, kind, template, focus)
    subject = subjects[focus % len(subjects)]
    second = subjects[(focus + 1) % len(subjects)]
    if second == subject:
        second = cluster.name.lower()
    slots = {"t": title_case(cluster.name.lower()), "s": title_case(subject), "s2": title_case(second), "y": str(YEAR)}
    outline = _outline(kind, rng, slots)
    title = fill(template, rng, {**slots, "n": str(len(outline))})
    others = [k for k in cluster.keywords if keyword_subject(k) != subject]
    extra = rng.sample(others, k=min(len(others), rng.randint(2, 4)))
    primary = next((k for k in cluster.keywords if keyword_subject(k) == subject), subject)
    h2_subjects = [sentence_subject(s.h2) for s in outline]
    description = fill(_DESCRIPTIONS[kind], rng, {"s": subject, "t": display_lower(cluster.name),
                                                   "a": h2_subjects[1], "b": h2_subjects[-2]})
    keywords = tuple(dict.fromkeys([primary, *extra]))
    return IdeaOut(title, kind, keywords, outline, description)


def generate_ideas(cluster: ClusterIn, taken_titles: frozenset[str]) -> list[IdeaOut]:
    """3-5 ideas of different content types whose titles are new to the site."""
    rng = seeded("ideas", cluster.name, *sorted(cluster.keywords))  # content, not ids: same input, same ideas
    wanted = 3 + rng.randrange(3)
    subjects = _subjects(cluster.keywords, cluster.name)
    kinds = rng.sample(CONTENT_TYPES, k=len(CONTENT_TYPES))
    taken = {t.casefold() for t in taken_titles}
    ideas: list[IdeaOut] = []
    for attempt in range(len(kinds) * 12):
        kind = kinds[attempt % len(kinds)]
        templates = _TITLES[kind]
        template = templates[(attempt // len(kinds) + rng.randrange(len(templates))) % len(templates)]
        idea = _idea(cluster, kind, template, attempt, subjects)
        if idea.title.casefold() in taken:
            continue
        taken.add(idea.title.casefold())
        ideas.append(idea)
        if len(ideas) == wanted:
            return ideas
    if len(ideas) < 3:
        raise InvalidAIOutput(f"could not find 3 untaken titles for cluster {cluster.name!r}")
    return ideas


# --------------------------------------------------------------------------- sentence grammar

# Sentence grammar, one template per unindented line (indented lines continue it). Slots:
# {sub} what the paragraph is about, {parent} its H2, {topic} the cluster, {kw} a target
# keyword, {other} another section, {doctype} the kind of article. Templates never make {sub},
# {parent}, {topic} or {kw} the grammatical subject of a verb, so singular and plural phrases
# read equally well.
_ROLES = _parse_grammar("""
## definition
At its core, [success|progress|doing well] with {sub} [comes down to|is really about|boils down to]
  [a handful of|a few|several] [simple|practical|repeatable] decisions that [add up over time|compound quickly|shape
  everything else].
When people talk about {sub}, they usually mean [the practical choices|the day-to-day decisions|the habits and tools]
  that make {topic} [work|pay off|worthwhile] [in real life|outside of theory|week after week].
Put simply, the work around {sub} is about [how you plan around|the way you approach|how you think about] {kw}
  [before problems appear|long before anything goes wrong|before you spend serious money].
The [easiest|clearest|most useful] way to think about {sub} is as [a set of trade-offs|a balance between effort and
  results|a series of small, deliberate choices] rather than [a single big decision|a fixed rulebook|a one-off task].
[Nearly every|Almost every|Every] [successful|well-run|satisfying] [approach to|experience with] {topic} [rests
  on|leans on|starts from] a [clear|sensible|realistic] view of {sub}.
In [practical|everyday|plain] terms, [success|doing well] with {sub} [means|is about] [knowing what you need|matching
  your choices to your goals|paying attention to the details that matter] [before you commit|rather than
  guessing|instead of following trends].
Think of {sub} as the [groundwork|foundation|framework] that [keeps|holds] the rest of your [plan|routine|setup]
  for {kw} together.
[Many|Plenty of] [guides|articles|forum threads] [overcomplicate|overthink|dress up] {sub}, but the [underlying
  idea|basic principle|core logic] is [refreshingly simple|straightforward|easy to grasp].
[A useful|A simple|A working] definition of {sub} [for our purposes|in this context|for anyone starting out] is
  [whatever|anything that] [moves you closer to|supports|protects] [your goals with|your progress in|good results
  from] {kw}.
[Seen from a distance|From the outside|At first glance], {sub} [can look|may seem|might appear]
  [technical|intimidating|fussy], yet [the principles involved|the ideas behind the work|the underlying rules]
  [are|feel] [familiar|intuitive|sensible] [once you try them|after a little practice|within a few attempts].
## reason
This matters because [small mistakes|early missteps|rushed decisions] around {sub} [tend to|often]
  [snowball|multiply|compound] [later on|down the line|over the following weeks].
[Care with|Attention to] {sub} [saves|spares you] [time|money|frustration] and [makes|keeps] {kw} [far more|much
  more|noticeably more] [enjoyable|predictable|rewarding].
[People who|Readers who|Those who] [take|spend] [a little|some] time on {sub} [usually|tend to|generally]
  [report|see|notice] [better|more consistent|longer-lasting] results [with|from] {topic}.
[Skipping|Rushing|Ignoring] {sub} is [one of the most common reasons|a common reason|often the main reason]
  [that|why] progress with {kw} [feels harder than it should|stalls|disappoints] [for newcomers|in the first few
  months|early on].
Because attention to {sub} [affects|touches|shapes] [almost every|nearly every|each] [later decision|other step|part
  of the process], it [deserves|is worth] [a careful look|your attention|a few minutes of planning] [up
  front|early|first].
[The payoff|The benefit|The upside] is [simple|clear|easy to see]: [fewer surprises|less wasted effort|fewer expensive
  mistakes] and [more confidence|a clearer plan|steadier progress] [with|around|when working on] {kw}.
[Without|Lacking] a [clear|basic|workable] [view of|plan for|handle on] {sub}, [it is easy to|many people]
  [drift|stall|second-guess every step] and [lose interest in|give up on|feel stuck with] {topic}.
[Attention to|Care with|A little planning around] {sub} [also|often|usually] [makes|leaves] [later choices|every
  later step|the rest of the process] [easier|simpler|cheaper] [because|since] [fewer options remain|you know what
  you need|the guesswork is gone].
[It is|This is] [the part|the stage|the piece] [where|at which] [a modest|a small|a little] [investment of
  time|effort|care] [in|on] {sub} [pays back|returns|repays itself] [the most|many times over|quickly].
## explanation
[In most cases|Usually|More often than not], [the best|the most sensible|a smart] [starting point|first
  step|approach] is to [write down|list|clarify] [what you want from|your goals for|your priorities for] {sub}
  [and work backwards|before comparing options|before buying anything].
[Look at|Consider|Pay attention to] [how often|how intensively|the conditions in which] you [will|plan to] [rely
  on|use|return to] {sub}, since [that single factor|this one detail|frequency of use] [narrows|shapes|simplifies]
  [the choice|your options|the decision] [considerably|a great deal|more than anything else].
The [details|specifics] [vary|differ|change] from [person to person|one situation to the next|case to case],
  [yet|but] [a few principles|some fundamentals|the core ideas] behind {sub} [apply|hold] [almost everywhere|in
  nearly every case|regardless of experience].
[A good rule of thumb|A helpful guideline|One reliable principle] is to [start simple|keep things simple at
  first|change one variable at a time] [with|when approaching|while learning] {sub} and [add
  complexity|adjust|refine] only [once|when|after] [the basics feel natural|you see consistent results|you
  understand the effect].
[Expect|Plan for|Allow for] [a short|a modest|some] learning curve: [the first attempts|your first few tries|early
  sessions] with {sub} [rarely look perfect|are rarely polished|tend to feel clumsy], and [that is normal|that is
  completely fine|that is part of the process].
[It also helps to|It pays to|You will benefit if you] [keep notes|track what you change|record your results] [as
  you experiment with|while working on|each time you adjust] {sub}, [so patterns become obvious|so you can repeat
  what works|so progress is easy to measure].
[Consistency|Patience|Attention to detail] [tends to matter|usually matters|matters] more than
  [speed|perfection|expensive extras] [when it comes to|with|for] {sub}, [especially|particularly] [for anyone new
  to|at the start of|in the early stages of] {topic}.
[Most experienced|Seasoned|Long-time] [practitioners|enthusiasts|users] [agree that|will tell you that|say that]
  work on {sub} [rewards|pays back] [steady attention|regular practice|careful planning] [far more than|much more
  than|more than] [big one-off efforts|occasional bursts of enthusiasm|expensive shortcuts].
Your [budget|schedule|starting level] [will|should] [shape|influence|guide] how [deep|far] you go
  into {sub}, and [it is perfectly fine to start small|there is no shame in keeping it basic|you can take it
  slowly].
[One way|A simple way|A practical way] to [judge|measure|assess] progress with {sub} is to compare [where you are
  now|this month's results|your current routine] with [where you started|your first attempt|the goal you wrote
  down].
[The interplay between|The link between|The connection between] {sub} and {kw} [is easy to miss|is often
  underestimated|deserves attention]: [a change in one|adjusting one|improving one] [usually|often] [shows up
  in|affects|ripples into] the other.
[Timing|Sequence|Order] [matters too|also plays a role|is worth a thought]: [tackling|sorting out|settling] {sub}
  [before|ahead of] [the more advanced steps|the finer points|everything else] [keeps|makes] [the whole
  process|the rest of the plan] [calmer|simpler|more manageable].
## tip
[A practical tip|One useful tip|Here is a simple tip]: [set aside|block out|reserve] [ten minutes|a short
  session|a regular slot] [each week|every few days|on a fixed day] to [review|revisit|check in on] {sub}.
[Try|Consider|Start by] [comparing|testing|reviewing] [two or three|a couple of|several] options for {sub} [side
  by side|in parallel|against the same criteria] [before settling on one|before you commit|rather than picking the
  first one you find].
[If you are unsure|When in doubt|If you feel stuck], [return to|go back to|revisit] [your original goal|the
  basics|what you wanted from {kw}] and [check that your choices around {sub} still serve it|ask whether your
  approach to {sub} still fits|see whether your plan for {sub} still makes sense].
[Keep|Make] [a simple checklist|a short list|a running note] for {sub} [so that nothing important slips through
  the cracks|so no key step is left to memory|and tick items off as you go].
[Ask|Talk to|Learn from] [people who have|others who have|someone who has] [already|recently] [worked
  through|dealt with|tackled] {sub}; [their hindsight|their experience|a quick conversation] [can save you|often
  saves you|will spare you] [weeks of trial and error|a costly mistake|plenty of guesswork].
[Resist the urge to|Avoid the temptation to|Try not to] [change everything at once|copy someone else's setup
  wholesale|chase every new trend] [with|around] {sub}, because [small, measured adjustments|gradual
  changes|step-by-step changes] [are easier to evaluate|teach you more|show you what actually works].
[Budget|Plan|Set aside] [a little extra|some] [time|room|margin] for {sub}, since [the first round|the initial
  setup|your first attempt] [usually|almost always|often] takes longer than [expected|planned|you think].
[Write down|Note|Jot down] [one|a single] [lesson|observation|improvement] [after every|after each|following
  every] [session|attempt|week] [spent on|devoted to|involving] {sub}; [over a month|after a few weeks|over time]
  [the list|that record|your log] [becomes|turns into|grows into] [a personal playbook|your own guide|a valuable
  reference].
[Pair|Combine|Link] {sub} with [an existing habit|something you already do|a fixed point in your week] [so it
  happens|so it gets done|and it will happen] [without|with less] [willpower|effort|negotiation].
[Focus on|Prioritise|Start with] [the one or two|the few|the handful of] [changes|decisions|habits] around {sub}
  that [affect|move|improve] [your results|the outcome] [the most|the fastest|most directly], and [leave the rest
  for later|ignore the noise for now|park everything else].
[Take|Snap|Keep] [photos|notes|a quick record] [before and after each change to|at each stage of|whenever you
  adjust] {sub} [so you can|and you will be able to] [see progress|spot what changed|compare results] [objectively|at a
  glance|without relying on memory].
## example
For example, [someone|a reader|a beginner] [focused on|interested in|exploring] {kw} might [begin with|start
  with|spend the first week on] {sub} and [only then|afterwards|later] [move on to|tackle|look at] [the finer
  details|more advanced choices|everything else].
[Picture|Imagine|Consider] [a typical|an ordinary|a busy] [weekend|week|month]: once you have [planned
  for|thought through|settled] {sub} [in advance|ahead of time|beforehand], [the rest of|everything else in] your
  {topic} routine [falls into place|runs more smoothly|feels far less stressful].
[A common scenario|A familiar situation|A typical case]: [someone|a newcomer|a first-timer]
  [reads|watches|hears] [conflicting advice|dozens of opinions|contradictory tips] about {sub},
  [freezes|stalls|hesitates], and [never gets started|never takes the first step|makes no progress]; [a simple
  plan|a short list of priorities|one clear goal] [prevents|avoids|solves] [that|this].
[Take|Consider] {kw} [as an example|as a case in point|for instance]: the [people|readers] who [get the most from
  it|enjoy it most|see the best results] [usually|tend to|typically] [treat|approach|handle] {sub} [as an ongoing
  habit|as a routine|step by step] rather than [a one-time task|a single decision|an afterthought].
[In practice|In real life|Day to day], [this could mean|this might look like|that often means]
  [revisiting|adjusting|reviewing] {sub} [after each|after every|following each] [session|attempt|week] and
  [noting|writing down|recording] [one thing to improve|a single lesson|what worked].
[One reader|A friend of ours|A colleague] [who was new to|who was just starting with|who came fresh to] {topic}
  [spent|wasted|lost] [weeks|a whole season|months] [before realising|until realising|before discovering] that
  {sub} had been [the missing piece|the real bottleneck|what held everything back].
[Suppose|Say|Imagine] you [have|only have|can spare] [an hour|a free evening|a Saturday morning] [each week|a
  week|now and then]: [spending part of it on|devoting some of it to|using a slice of it for] {sub} [will|can|tends
  to] do more for {kw} than [any gadget|any shortcut|most quick fixes].
[Here is|Consider|Take] a [simple|concrete|realistic] [illustration|case|example]: [two people|two beginners|two
  readers] [start researching|begin looking into|start reading about] {kw} [at the same time|in the same
  month|together], [but|and] the one who [pays attention to|plans around|takes care with] {sub}
  [usually|typically|almost always] [progresses faster|stays motivated longer|spends less along the way].
## caution
[Be careful not to|Take care not to|Try not to] [overthink|overcomplicate|obsess over] {sub}; [perfect conditions
  rarely exist|flawless plans almost never exist|ideal choices are rare], and [waiting for them|holding out for
  them] [only delays progress|wastes valuable time|costs you momentum].
[One warning|A word of caution|A common trap]: [cheap shortcuts|quick fixes|generic, one-size-fits-all tips]
  [around|for|about] {sub} [often|frequently|can] [cost more|backfire|create extra work] [in the long
  run|later|over time].
[Watch out for|Be wary of|Keep an eye out for] [advice|guidance|any recommendation] about {sub} that
  [ignores|overlooks|does not account for] your [situation|budget|experience level]; [context matters more
  than|your own circumstances matter more than|the details of your case matter more than] [general
  rules|popularity|hype].
[Do not|Never] [assume|take it for granted] that [what works for others|a popular method|the most expensive option]
  [will automatically work for you|will suit you|will fit your needs] [when it comes to|with|for] {sub}.
[If something feels off|If results suddenly drop|If progress stalls] [with|around] {sub}, [pause|stop|step back]
  and [check|review|reassess] [the basics|your last change|your assumptions] [before adding more|rather than
  changing everything|before buying something new].
[Be honest about|Be realistic about|Keep an eye on] how much [time|energy|money] [the work on|your plan for] {sub}
  [really|actually] [takes|demands|needs]; [overcommitting|overpromising|overextending] [early|at the start|in the
  first month] is [a fast route to|a common cause of|the usual path to] [burnout|frustration|giving up].
[Marketing claims|Bold promises|Glossy reviews] [about|around|surrounding] {sub} [deserve|call for|warrant] [a
  healthy dose of scepticism|a second look|some caution]; [test|try|check] [them|the claims] [against your own
  experience|on a small scale first|before relying on them].
[A final caution|One more caution|Another caution] on {sub}: [consistency beats intensity|slow and steady beats a
  sprint|little and often beats all at once], so [avoid|resist|skip] [heroic|marathon|all-day]
  [sessions|efforts|weekends] that [leave you|make you feel] [drained|burnt out|reluctant to continue].
## comparison
[Compared with|Next to|Relative to] [a rushed approach|improvising|guesswork], a [deliberate|planned|structured]
  approach to {sub} [takes|needs|asks for] [a little more|slightly more|more] [effort|thought|time] [up front|at
  the start] but [pays off|saves effort|feels easier] [quickly|within weeks|over time].
[Some people|Some readers|Many beginners] [prefer|lean towards|favour] a [minimal|lightweight|hands-off] approach
  to {sub}, while others [want|like|choose] [more control|a detailed plan|every option available]; [neither is
  wrong|both can work|each has its place] [as long as it matches your goals|provided you stay consistent|if you
  understand the trade-offs].
The difference between [a good|a decent] and [a great|an excellent|a truly satisfying]
  [result|outcome|experience] [with|in] {sub} [is usually|often comes down to|tends to be] [attention to
  detail|consistency|small refinements] rather than [talent|luck|expensive gear].
[While|Although] [quick|fast|cheap] options for {sub} [look|seem|appear] [attractive|tempting|appealing] [at
  first|initially|on paper], [durable|reliable|well-chosen] [alternatives|choices] [usually|often|tend to] [work
  out|prove|end up] [better value|more economical|cheaper] [over time|in the long run|across a full year].
[Weighed against|Set beside|Measured against] {kw}, attention to {sub} [can look like|may seem like|might pass
  for] [the less glamorous|the quieter|the easily overlooked] [half|part|side] of the [equation|picture|story],
  [yet|but] it [often|frequently|usually] [decides|determines|shapes] [the outcome|how things turn out|the final
  result].
[Doing it yourself|A do-it-yourself approach|Handling it alone] [versus|compared with|instead of] [getting
  help|asking an expert|paying for guidance] with {sub} is [a real trade-off|a genuine choice|worth weighing]:
  [going solo saves money|the first saves money], while [help|guidance] saves time and [often|usually|sometimes]
  [frustration|a few mistakes|costly detours].
## transition
[With that in mind|Building on that|Keeping that in mind], it [is worth|helps] [taking a closer look at|turning
  to|examining] {sub}.
[Once the basics are clear|With the groundwork in place|After covering the fundamentals], the [natural next
  step|next thing to consider|logical next focus] is {sub}.
[This is where|Here is where|That is exactly where] [a closer look at|attention to|some thought about] {sub} [pays
  off|comes in|starts to matter].
[Now|Next], [consider|think about|turn to] {sub}, [an area that often gets overlooked|an area many guides skip|a
  part that deserves more attention than it gets] [in discussions of|when people talk about|in conversations
  about] {topic}.
[Within|As part of|Inside] {parent}, the question of {sub} [plays|has|fills] [a particular|a specific|an
  important] [role|part], [and|so] it [deserves|gets|needs] [its own|a separate|a dedicated] [look|discussion|few
  paragraphs].
[Moving on|Turning the page|Shifting focus] to {sub}, [the same logic applies|similar principles hold|the emphasis
  changes slightly], [but|and] [the details|the practical steps|the priorities] [are|look|feel] [a little
  different|more specific|more hands-on].
## takeaway
[That is why|This is why|For that reason] [a little|some|regular] [time|attention|care] [spent on|given to] {sub}
  [is rarely wasted|pays for itself|keeps paying off] [with|in|across] {topic}.
[The lesson here|The practical lesson|The point to remember] is [simple|straightforward]: [revisit|review|adjust]
  {sub} [often|regularly|whenever your goals change] and [let your results guide you|trust what your notes
  show|keep what works].
[Handled well|Done with care|Approached calmly], {sub} can [turn into|become|grow into] [a strength|an
  advantage|a quiet asset] [rather than|instead of] [a source of stress|a stumbling block|a recurring headache].
[None of this|Nothing here|None of it] [requires|demands|calls for] [perfection|expert knowledge|a big budget];
  [steady attention to|regular work on|a clear plan for] {sub} [is enough|does the heavy lifting|covers most of
  what matters].
[In short|The bottom line|The takeaway]: [treat|approach|handle] {sub} [deliberately|with intention|thoughtfully],
  and your [wider|broader|overall] {topic} [plan|routine|journey] [becomes|gets|feels] [easier|simpler|far more
  manageable].
Give {sub} [proper attention|a little focused effort|some steady attention] and [you will|you'll]
  [notice|feel|see] the
  [difference|benefit|improvement] [almost immediately|within weeks|sooner than you expect].
[Small|Steady|Consistent] [improvements|refinements|adjustments] to {sub} [add up|compound|accumulate] [faster than
  most people expect|more than you might think|quicker than you would guess].
[Keep|Hold on to] [this|that] [principle|idea|thought] [as you move through|as you read|for] the [rest of this
  {doctype}|next sections|sections that follow]: [attention to|care with|clarity about] {sub} [pays off most|works
  best|matters most] when it [fits|matches|supports] your [real|actual|everyday] goals.
[Above all|More than anything|Most of all], [remember|keep in mind|bear in mind] that
  [progress|improvement|mastery] [with|in] {sub} is [gradual|cumulative|a process], [not a single event|not a
  one-off|never instant].
## overview
[This section|The following section|This part of the {doctype}] [looks at|covers|walks through] {parent} [in
  detail|step by step|from a practical angle], [with|including|covering] {subs}.
[A closer look at|Getting to grips with] {parent} [deserves|needs|merits] [its own section|some
  space|careful attention] [because|since] it [connects|ties together|links] [so many|several|many of the]
  [threads|parts|pieces] of {topic}.
[Here|In this section], [we break down|you will find a breakdown of|we unpack] {parent}, [with|including]
  [practical|concrete|hands-on] [advice|pointers|examples] on {subs}.
[Before diving in|Before going further|First], it [helps|is useful|pays] to [place|frame|situate] {parent} within
  [the bigger picture|the wider goal|your overall plan] for {kw}.
{Parent} [can seem|might look|may appear] [simple|straightforward|obvious] [on the surface|at first], [yet|but]
  [there are|it is worth knowing there are] [a few|several|some] [decisions|details|subtleties] that
  [matter|make a real difference|change the outcome], [especially|notably|above all] {subs}.
[The short version|In a nutshell|Put briefly]: the advice on {parent} [is where|marks the point where|is the stage
  where] [good intentions|plans|ideas] [about|around|for] {kw} [turn into|become|get translated into] [concrete
  action|real results|daily practice].
## hook
[Few|Not many] [topics|subjects|projects] [attract as much conflicting advice|generate as many questions|inspire as
  much debate] as {topic}, [and|yet] [the essentials|the fundamentals|the core ideas] are [easier to
  learn|simpler|more approachable] than [they look|most people assume|the noise suggests].
Anyone who has ever [searched for|read about|tried to research] {kw} [knows|will know|has probably noticed] [how
  quickly the advice piles up|how fast the opinions multiply|how overwhelming the information can feel].
[Interest in|Curiosity about|Demand for] {topic} [keeps growing|has grown steadily|shows no sign of slowing],
  [but|and yet] [clear|trustworthy|practical] [guidance|information|advice] [is still hard to find|remains
  scattered|is buried in forums and videos].
[Whether you are|If you are|For anyone] [just starting out|coming back after a break|looking to improve] [with|in]
  {topic}, [the path forward|the next step|real progress] [starts with|depends on|begins with] [a few|several|a
  handful of] [well-understood|clear|sound] [principles|decisions|habits].
## problem
The [problem|trouble|challenge] is that [most|many] [resources|guides|articles] about {kw} either [skim the
  surface|stay too general] or [bury the reader in jargon|drown the reader in detail|overwhelm the reader with edge
  cases].
[Many people|Plenty of readers|Most beginners] [start|dive in|begin] with {kw}, [get overwhelmed|feel
  confused|get stuck], and [stall|lose momentum|give up] [before|long before] they [see real results|reach the
  rewarding part|enjoy any real progress].
[Conflicting|Contradictory|Outdated] [opinions|tips|recommendations] make {topic} [feel|seem|look] [more
  complicated|harder|more expensive] than [necessary|it has to be for most people].
## promise
This {doctype} [cuts through the noise|keeps things practical|focuses on what works]: it [explains|covers|walks
  through] [the decisions that count|the essentials that matter], why they matter, and [how to act on them|how to
  apply them|what to do next].
[By the end|When you finish reading|Once you have read it], you [will|should] [have a clear plan|know the key
  decisions|know exactly what to focus on] for {topic}, [including|with|along with] [practical advice|concrete
  guidance|clear pointers] on {kw}.
[Rather than|Instead of] [listing every possible option|repeating generic advice|chasing trends], [this
  {doctype}|each section|every section below] [concentrates|focuses|zeroes in] on [the choices|the habits|the
  steps] that [make the biggest difference|matter most|move results] with {kw}.
## roadmap
[It opens with|The {doctype} opens with|It starts with] {first}, [moves through|then covers|continues with]
  {middle}, and [finishes|ends|closes] with {last}, [followed by|plus|before] [answers to common questions|a short
  FAQ|the questions readers ask most].
[The sections cover|Along the way you will find|Inside you will find] {first}, {middle} and {last}, [each
  with|all with|every one with] [practical tips|concrete examples|honest caveats].
## answer
[Usually|Most of the time|In many cases], [the honest answer|the practical answer|the realistic answer] [is|comes
  down to] [to start|to begin] [modestly|small|simply] with {sub} and [let experience|let your results|let practice]
  [guide|shape|refine] [the next decision|what you do next|your approach].
[Experienced readers|Long-time practitioners|Most experts] [tend to|usually|generally] [agree|say|suggest] that
  work on {sub} [rewards|responds to|benefits from] [a calm, steady approach|small, regular steps|patience] [far more
  than|rather than|more than] [big, sudden changes|expensive shortcuts|perfectionism].
[The short answer|In short|Briefly]: [it varies|it depends on your circumstances|there is no single rule],
  [but|though] [most people|most readers|beginners] [do well|get good results|are well served] by [focusing on the
  fundamentals of|starting simple with|paying steady attention to] {sub}.
[It largely depends on|The answer depends on|That comes down to] [your goals|your situation|how you plan to
  approach it], [yet|but] [for most people|in most cases|as a rule] [a measured approach to|steady attention
  to|a simple, consistent plan for] {sub} [works well|is enough|gets excellent results].
[For most readers|In the majority of cases|Generally speaking], [the best answer|the most reliable answer|a
  sensible answer] [starts with|comes from|begins with] {sub}: [get the basics right|keep it simple|start small]
  [first|early|at the beginning] and [refine|adjust|expand] [later|as you learn|once you see results].
[There is no|Nobody has a] [universal|one-size-fits-all|perfect] answer, [although|but]
  [experience|practice|the experience of other readers] [suggests|shows|points to the idea] that progress with
  {sub} [rewards|comes from|depends on] [patience|consistency|a steady routine] more than [big
  investments|quick fixes|intensity].
## detail
[A practical|A simple|A useful] [next step|first move|starting point] is to [write down|list|note] [one|a single]
  [goal|question|priority] about {sub} and [test it|check it|work on it] [for two weeks|over a month|for a few
  sessions] before [changing course|deciding anything else|adding more].
[Readers who|People who|Those who] [ask this|raise this question|wonder about this] [usually|often] [find|discover]
  that [the answer becomes obvious|things get clearer|the doubt fades] [once|after] they [try|practise|experiment
  with] {sub} [on a small scale|for a while|a few times].
[For more context|For the bigger picture|To go deeper], [revisit|reread|look back at] [the section on|the part
  about] {other}, [which|as it] [puts|places|sets] this question [in context|into perspective].
Start by [looking at|reviewing|thinking about] the place of {sub} in your [routine|goals|plans] [for|around] {kw},
  [and|then] [adjust|decide|choose] [from there|accordingly|with that in mind].
[If|When] [in doubt|you are unsure|the answer still feels unclear], [the section on|the part on|the advice about]
  {other} [above|earlier in this {doctype}] [covers|explains|goes into] [the details|this|the practical steps] [in
  more depth|more fully|step by step].
[Keep in mind|Remember|Bear in mind] that [your first answer|early choices|initial decisions] about {sub} [do not
  have to be|need not be|are rarely] [permanent|final|perfect]; [you can|most people] [revisit|refine|change] them
  [as your experience grows|after a few weeks|once you know more].
## recap
[To sum up|In summary|All in all], [success|progress|satisfaction] with {topic} [comes from|depends on|grows out of]
  [planning ahead|staying consistent|paying attention to the details], [especially|particularly|above all] [when
  it comes to|around|with] {kw}.
[This {doctype}|The sections above|Everything above] [covered|walked through|explained] {first}, {middle} and
  {last}; [each part|every section|each step] [builds on|connects to|supports] the others.
[The common thread|The thread running through this {doctype}|The recurring lesson] is [simple|clear|worth
  repeating]: [deliberate|thoughtful|steady] [choices|habits|decisions] [about|around] {kw}
  [beat|outperform|outlast] [guesswork|quick fixes|bursts of enthusiasm].
## encourage
[Pick|Choose|Start with] [one idea|a single tip|one change] from [this {doctype}|the sections above|what you have
  read], [put it into practice|try it|apply it] [this week|over the next few days|before the weekend], and [build
  from there|see what changes|notice the difference].
[Do not|Try not to] [wait for|hold out for|aim for] [a perfect plan|perfect conditions|the ideal moment]: [a modest
  start|a small first step|an imperfect first attempt] with {kw} [teaches you more than|beats|is worth more than]
  [weeks of research|endless reading|another round of comparison].
## next
[When you are ready|Once that feels natural|After that], [come back to|revisit|return to] [the sections on|the
  advice about|our notes on] {other} to [take the next step|go a little further|refine your approach].
[From here|Next|As a next step], [a good move|a sensible move|the logical move] is to [revisit|deepen your
  understanding of|spend more time on] {other} and keep [notes|a simple log|a record] of [what changes|your
  results|your progress].
## bullet
[Define|Write down|Clarify] your goal for {sub} [first|before anything else|at the start].
[Compare|Test|Try] [at least two|a couple of|several] options for {sub} [before committing|side by side|on a small
  scale].
[Review|Revisit|Check] {sub} [every few weeks|regularly|after each change].
[Keep notes on|Track|Record] what changes when you adjust {sub}.
[Ask|Learn from] [experienced practitioners|seasoned enthusiasts|long-time users] about {sub}.
[Avoid|Ignore|Steer clear of] [shortcuts|quick fixes|miracle products] for {sub} that [sound too good to be
  true|promise instant results|skip the basics].
[Budget|Allow|Plan] [extra time|some slack|a little margin] for {sub} [in the first month|at the start|while you
  learn].
[Match|Align|Fit] {sub} to your [real|actual|everyday] [goals|schedule|budget], not [someone else's|a trend|an
  influencer's setup].
""")

_FAQ_TEMPLATES: tuple[str, ...] = (
    "What is the best way to get started with {topic}?",
    "How long does it take to see results with {kw}?",
    "What are the most common mistakes with {topic}?",
    "How much should a beginner spend on {kw}?",
    "Where should a complete beginner start with {topic}?",
    "How often should I revisit my approach to {kw}?",
    "Do I need expensive equipment for {topic}?",
    "What should I focus on first with {kw}?",
)

_DOCTYPES: dict[str, str] = {"guide": "guide", "how-to": "walkthrough", "listicle": "list",
                             "comparison": "comparison", "review": "review", "checklist": "checklist"}


# --------------------------------------------------------------------------- articles

TARGET_WORDS = 2500
_WORD = re.compile(r"[A-Za-z0-9]+(?:['\u2019-][A-Za-z0-9]+)*")
_BODY_FILLERS = ("explanation", "tip", "example", "caution", "comparison", "reason", "explanation", "tip")
_LEAD_FILLERS = ("reason", "explanation")
_OPENERS = ("definition", "definition", "transition")


def count_words(text: str) -> int:
    """Words as a reader counts them (markdown symbols excluded)."""
    return len(_WORD.findall(text))


@dataclass(frozen=True)
class Block:
    """One rendered element of an article, kept neutral so HTML and markdown agree."""

    kind: str  # "h1", "h2", "h3", "p" or "ul"
    text: str = ""
    items: tuple[str, ...] = ()


class _Writer:
    """Writes paragraphs sentence by sentence against a running word budget.

    Each paragraph draws from its own seed (idea title, section, paragraph index), and the
    writer avoids reusing a template inside one article so the prose does not repeat itself.
    """

    def __init__(self, title: str, base: dict[str, str], keywords: list[str], others: list[str]) -> None:
        self.title = title
        self.base = base
        self.keywords = keywords
        self.others = others
        self.used: set[str] = set()

    def sentence(self, role: str, rng: random.Random, slots: dict[str, str]) -> str:
        """One sentence of `role`, preferring templates not yet used in this article."""
        bank = _ROLES[role]
        fresh = [t for t in bank if t not in self.used] or list(bank)
        template = rng.choice(fresh)
        self.used.add(template)
        keywords = [k for k in self.keywords if k != slots.get("sub")] or self.keywords
        others = [o for o in self.others if o not in (slots.get("sub"), slots.get("parent"))] or self.others
        values = {**self.base, "kw": rng.choice(keywords), "other": rng.choice(others), **slots}
        return fill(template, rng, values)

    def paragraph(self, key: tuple[object, ...], roles: tuple[str, ...], slots: dict[str, str],
                  target: int = 0, fillers: tuple[str, ...] = (), closing: str | None = None) -> str:
        """Fixed opening roles, then shuffled fillers until ~`target` words, then a closer."""
        rng = seeded(self.title, *key)
        sentences = [self.sentence(role, rng, slots) for role in roles]
        pool = rng.sample(fillers, k=len(fillers)) if fillers else []
        reserve = 20 if closing else 0
        for role in pool:
            if count_words(" ".join(sentences)) + 10 >= target - reserve:
                break
            sentences.append(self.sentence(role, rng, slots))
        if closing:
            sentences.append(self.sentence(closing, rng, slots))
        return " ".join(sentences)


def _faq(idea: IdeaIn, writer: _Writer, topic: str) -> list[Block]:
    """3-5 questions: question-shaped target keywords first, then seeded generic ones."""
    rng = seeded(idea.title, "faq")
    questions = [q for q in (keyword_question(k) for k in idea.target_keywords) if q][:2]
    pairs = [(q, topic) for q in questions]
    for template in rng.sample(_FAQ_TEMPLATES, k=len(_FAQ_TEMPLATES)):
        subject = rng.choice(writer.keywords) if "{kw}" in template else topic
        question = fill(template, rng, {"topic": topic, "kw": subject})
        if question.casefold() not in {q.casefold() for q, _ in pairs}:
            pairs.append((question, subject))
    blocks = [Block("h2", "Frequently Asked Questions")]
    for index, (question, subject) in enumerate(pairs[: 3 + rng.randrange(3)]):
        answer = writer.paragraph(("faq", index), ("answer", "detail"), {"sub": subject, "parent": subject})
        blocks += [Block("h3", question), Block("p", answer)]
    return blocks


def _intro_and_conclusion(writer: _Writer, subjects: list[str]) -> tuple[list[Block], list[Block]]:
    """The fixed-shape opening and closing paragraphs."""
    slots = {"sub": subjects[0], "parent": subjects[0]}
    intro = [Block("p", writer.paragraph(("intro", 0), ("hook", "problem"), slots)),
             Block("p", writer.paragraph(("intro", 1), ("promise", "roadmap"), slots))]
    conclusion = [Block("h2", "Conclusion"),
                  Block("p", writer.paragraph(("conclusion", 0), ("recap", "recap"), slots)),
                  Block("p", writer.paragraph(("conclusion", 1), ("encourage", "next"), slots))]
    return intro, conclusion


def _body(idea: IdeaIn, outline: tuple[OutlineSection, ...], writer: _Writer, budget: int) -> list[Block]:
    """The outline's sections sharing `budget` words by weight (H2 lead 0.5, H3 paragraph 1).

    Targets are recomputed from what is left after every paragraph, so overshoot in one
    paragraph is absorbed by the next ones and the article lands near the budget.
    """
    lists_rng = seeded(idea.title, "lists")
    weight = sum(0.5 + max(1, len(s.h3s)) for s in outline)
    blocks: list[Block] = []
    for section in outline:
        parent = sentence_subject(section.h2)
        h3s = section.h3s or (section.h2,)
        subjects = [sentence_subject(h) for h in h3s]
        slots = {"parent": parent, "subs": join_phrases(subjects), "sub": subjects[0]}
        lead = writer.paragraph((section.h2, "lead"), ("overview",), slots,
                                int(budget / weight * 0.5), _LEAD_FILLERS)
        blocks += [Block("h2", section.h2), Block("p", lead)]
        budget -= count_words(lead)
        weight -= 0.5
        if idea.content_type == "checklist" or lists_rng.random() < 0.5:
            items = _bullets(idea, section.h2, [parent, *subjects], writer)
            blocks.append(Block("ul", items=items))
            budget -= count_words(" ".join(items))
        for h3, subject in zip(h3s, subjects, strict=True):
            if section.h3s:
                blocks.append(Block("h3", h3))
            target = budget / weight
            parts = max(1, round(target / 130))  # long shares become several ~130-word paragraphs
            opener = seeded(idea.title, section.h2, h3).choice(_OPENERS)
            for part in range(parts):
                closing = "takeaway" if part == parts - 1 and target >= 60 else None
                text = writer.paragraph((section.h2, h3, part), ("transition" if part else opener,),
                                        {**slots, "sub": subject}, int(target / parts), _BODY_FILLERS, closing)
                blocks.append(Block("p", text))
                budget -= count_words(text)
            weight -= 1
    return blocks


def _bullets(idea: IdeaIn, h2: str, subjects: list[str], writer: _Writer) -> tuple[str, ...]:
    """A short list of action points for a section, one subject per item."""
    rng = seeded(idea.title, h2, "bullets")
    count = min(len(subjects) + 1, 3 + rng.randrange(2))
    return tuple(writer.sentence("bullet", rng, {"sub": subjects[i % len(subjects)]}) for i in range(count))


def _block_words(blocks: list[Block]) -> int:
    """Words in a run of blocks, list items included."""
    return sum(count_words(b.text) + count_words(" ".join(b.items)) for b in blocks)


_MD_INLINE = re.compile(r"[\\`*_\[\]<~]|&(?=#?\w+;)")  # emphasis, code, links, raw HTML, entities
_MD_BLOCK_START = re.compile(r"^([#>+=-])|^(\d{1,9})([.)])(?=\s|$)")  # heading, quote, list, rule, ordered list


def _escape_block_start(match: re.Match[str]) -> str:
    return "\\" + match[1] if match[1] else f"{match[2]}\\{match[3]}"


def markdown_text(text: str, heading: bool = False) -> str:
    """Plain text as Markdown that renders as exactly that text, on one line.

    Keywords come from users and titles and outlines from a model, and sentences are built from them,
    so "**bold** [x](javascript:alert(1)) <script>" must not become bold, a link or raw HTML in the
    article's Markdown, as it does not in its HTML (html.escape). Only what Markdown would read is
    escaped, so the raw text stays readable: "&" only where it starts an entity, and the start of a
    paragraph or list item ("1.", "- ", "#") only there. A heading's text is read inline only, but a
    trailing "#" would close it, so there every "#" is escaped. Whitespace is collapsed: a newline
    would end the block.
    """
    escaped = _MD_INLINE.sub(lambda m: "\\" + m[0], " ".join(text.split()))
    if heading:
        return escaped.replace("#", "\\#")
    return _MD_BLOCK_START.sub(_escape_block_start, escaped, count=1)


def render_markdown(blocks: list[Block]) -> str:
    """Markdown with ATX headings and dash lists; a block's text is plain text, escaped as such."""
    prefix = {"h1": "# ", "h2": "## ", "h3": "### "}
    parts = ["\n".join(f"- {markdown_text(item)}" for item in b.items) if b.kind == "ul"
             else markdown_text(b.text) if b.kind == "p"
             else prefix[b.kind] + markdown_text(b.text, heading=True) for b in blocks]
    return "\n\n".join(parts) + "\n"


def render_html(blocks: list[Block]) -> str:
    """Escaped, well-formed HTML fragment (h1/h2/h3/p/ul)."""
    parts = []
    for b in blocks:
        if b.kind == "ul":
            items = "".join(f"<li>{html.escape(item)}</li>" for item in b.items)
            parts.append(f"<ul>{items}</ul>")
        else:
            parts.append(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>")
    return "\n".join(parts) + "\n"


def slugify(text: str) -> str:
    """Lowercase ASCII words joined by hyphens, cut at a word boundary."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > 80:
        slug = slug[:81].rsplit("-", 1)[0]
    return slug or "article"


_DANGLING = frozenset("a an and the of to for in on with vs or by from at".split())


def clip(text: str, limit: int) -> str:
    """Shorten to `limit` characters at a word boundary, never ending on a dangling word."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    words = text[: limit + 1].rsplit(" ", 1)[0].rstrip(" ,;:-").split()
    while len(words) > 1 and words[-1].lower() in _DANGLING:
        words.pop()
    return " ".join(words).rstrip(" ,;:-")


def meta_title(title: str) -> str:
    """<= 60 characters: the title, its part before a colon, or a clean cut."""
    head = title.split(":")[0].strip()
    if len(title) > 60 and 20 <= len(head) <= 60:
        return head
    return clip(title, 60)


def meta_description(description: str, fallback: str) -> str:
    """<= 160 characters, ending like a sentence."""
    text = " ".join((description or fallback).split())
    if len(text) <= 160:
        return text
    return clip(text, 156) + "..."


def generate_content(idea: IdeaIn) -> ArticleOut:
    """A ~2,500-word article with introduction, the outline's sections, FAQ and conclusion."""
    title = " ".join(idea.title.split())
    if not title:
        raise InvalidAIOutput("idea has no title")
    kind = idea.content_type if idea.content_type in _DOCTYPES else "guide"
    keywords = list(dict.fromkeys(s for s in map(keyword_subject, idea.target_keywords) if s))
    topic = display_lower(idea.cluster_name) if idea.cluster_name.strip() else (keywords or [subject_of(title)])[0]
    keywords = keywords or [topic]
    outline = idea.outline or _outline("guide", seeded(title, "outline"), {
        "t": title_case(topic), "s": title_case(keywords[0]), "s2": title_case(keywords[-1]), "y": str(YEAR)})
    h2s = [sentence_subject(s.h2) for s in outline]
    others = list(dict.fromkeys(h2s + [sentence_subject(h) for s in outline for h in s.h3s]))
    base = {"topic": topic, "doctype": _DOCTYPES[kind], "first": h2s[0], "middle": h2s[len(h2s) // 2],
            "last": h2s[-1]}
    writer = _Writer(title, base, keywords, others)
    intro, conclusion = _intro_and_conclusion(writer, keywords)
    faq = _faq(idea, writer, topic)
    headings = count_words(title) + sum(count_words(s.h2) + count_words(" ".join(s.h3s)) for s in outline)
    budget = TARGET_WORDS - headings - _block_words(intro + faq + conclusion)
    blocks = [Block("h1", title), *intro, *_body(idea, outline, writer, budget), *faq, *conclusion]
    markdown = render_markdown(blocks)
    return ArticleOut(
        title=title,
        meta_title=meta_title(title),
        meta_description=meta_description(idea.description, intro[0].text),
        slug=slugify(title),
        html=render_html(blocks),
        markdown=markdown,
        word_count=count_words(markdown),
        sections=tuple(b.text for b in blocks if b.kind == "h2"),
    )
