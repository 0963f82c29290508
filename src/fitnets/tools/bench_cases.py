"""``fitnets bench step``'s cases and report: the declared rows (each method's step with the defaults, the fixed
preset and ``--fast``'s choice; the option matrix), the ratios between rows measured on the same batches, and the
table. What measures them is ``fitnets.tools.bench_step``."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from fitnets.data.augment import Augmentation
from fitnets.training.config import RunConfig
from fitnets.training.speed import Speed

AUGMENTATION = Augmentation(pad=4, flip=True)  # the standard CIFAR augmentation: 162 views per example
PROTOCOL_EPOCHS = 240  # the CIFAR-100 zoo's protocol (configs/cifar100-*.yaml): epochs a live KD run spends


DEFAULTS = Speed.of(RunConfig())
ALL_OFF = replace(DEFAULTS, teacher_channels_last=False, teacher_fold_bn=False)  # the option matrix's baseline
BF16 = "bfloat16"


@dataclass(frozen=True)
class Case:
    """One row of ``bench step``.

    Attributes:
        step: what is trained, on which loss: ``"ce"``, ``"kd"`` or ``"hint"`` (FitNets' stage 1).
        teacher: where the teacher's outputs come from: ``"live"``, ``"cached"`` (once per example, as a run
            without augmentation) or ``"store"`` (the teacher-output store, every view filled); ``None`` for CE.
        speed: the speed settings; ``settings`` names them in the row (``"defaults"``, ``"--fast"``, ...).
        augmented: batches with the CIFAR augmentation (pad 4, flips), keyed by view as a run's are.
        cut: stage 1's forwards stop after the hint and guided layers (off only to measure what that saves).
        key: the name the ratios use for the row.
    """

    label: str
    step: str
    teacher: str | None
    speed: Speed
    settings: str
    augmented: bool = False
    cut: bool = True
    key: str = ""
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.label} ({self.settings})"

    @property
    def compiles(self) -> bool:
        """Whether timing it runs a ``torch.compile``d forward (stage 1 keeps the eager one, as a run does;
        cached and stored outputs are computed before timing)."""
        s = self.speed
        return self.step != "hint" and (s.compile or (self.teacher == "live" and s.compiles_teacher))


@dataclass
class StepRow:
    name: str
    images_per_s: float            # the median over the rounds of a timed epoch's images/s
    note: str = ""
    step: str = ""                 # the case's label and settings, of which ``name`` is made
    settings: str = ""
    rates: list[float] = field(default_factory=list)  # each round's figure
    data_wait_share: float = 0.0   # the median share of the epoch spent waiting for batches


# The question a user asks: how fast is each method's step as a run trains it, with the defaults and with --fast.
STEPS = [  # (key, label, step, teacher, augmented)
    ("ce", "CE step", "ce", None, False),
    ("kd_cached", "KD step, teacher logits cached", "kd", "cached", False),
    ("stage1_cached", "FitNet stage 1, cut, hints cached", "hint", "cached", False),
    ("ce_aug", "CE step, augmented batches", "ce", None, True),
    ("kd_live_aug", "KD step, teacher live (no store), augmented batches", "kd", "live", True),
    ("kd_store", "KD step, teacher-output store, augmented batches", "kd", "store", True),
]


def default_cases(fast: Speed, preset: Speed | None = None) -> list[Case]:
    """Each step of ``STEPS`` as a run trains it with the default config, with the fixed preset ``--fast`` was
    (``preset``, when given), then with ``--fast``'s measured choice (``fast``)."""
    settings = [("defaults", DEFAULTS, ""), ("fixed preset", preset, "preset_"), ("--fast", fast, "fast_")]
    return [Case(label, step, teacher, speed, name, augmented, key=f"{prefix}{key}")
            for name, speed, prefix in settings if speed is not None
            for key, label, step, teacher, augmented in STEPS]


def matrix_cases(fast: Speed, compile: bool) -> list[Case]:
    """The option matrix (``--all``), on plain batches: the live-teacher KD step with each teacher option and,
    with the ``--fast`` teacher, each student option in fp32 and under bf16 autocast; stage 1 with full
    forwards, with the cut alone, and with the cut and the teacher and student options."""
    off, defaults = ALL_OFF, DEFAULTS
    bf16 = replace(defaults, teacher_dtype=BF16)
    teachers = {"every option off": off, "teacher defaults (channels_last + folded BN)": defaults,
                "teacher defaults + bf16": bf16}
    if compile:
        teachers |= {"teacher defaults + compiled": replace(defaults, teacher_compile=True),
                     "teacher defaults + bf16 + compiled": replace(bf16, teacher_compile=True)}
    students = {"student channels_last": {"channels_last": True}}
    if compile:
        students |= {"student compiled": {"compile": True},
                     "student compiled + channels_last": {"compile": True, "channels_last": True}}
    fast_teacher = replace(bf16, teacher_compile=fast.compiles_teacher)
    fast_label = "teacher defaults + bf16" + (" + compiled" if fast.compiles_teacher else "")
    kd = [Case("KD step, teacher live", "kd", "live", speed, label, key="kd_off" if speed == off else "")
          for label, speed in teachers.items()]
    kd += [Case("KD step, teacher live", "kd", "live", replace(fast_teacher, **options, student_dtype=autocast),
                f"{fast_label}; {label}" + (" (bf16)" if autocast == BF16 else ""),
                note="student under bf16 autocast" if autocast == BF16 else "")
           for autocast in ("float32", BF16)
           for label, options in (({} if autocast != BF16 else {"student contiguous, eager": {}}) | students).items()]
    stage1 = [Case("FitNet stage 1", "hint", "live", off, "full forwards, every option off", cut=False,
                   key="stage1_full"),
              Case("FitNet stage 1", "hint", "live", off, "cut, every other option off", key="stage1_cut")]
    stage1 += [Case("FitNet stage 1", "hint", "live", speed, f"cut, {label}")
               for label, speed in (("teacher defaults", defaults), ("teacher defaults + bf16", bf16),
                                    ("teacher defaults + bf16; student channels_last",
                                     replace(bf16, channels_last=True)))]
    return kd + stage1


# Each ratio of two rows measured on the same batches: (numerator, denominator) by the rows' keys.
RATIOS = {"kd_cached_cost": ("ce", "kd_cached"), "kd_store_cost": ("ce_aug", "kd_store"),
          "kd_fast_store_speedup": ("fast_kd_store", "ce_aug"),
          "kd_preset_store_speedup": ("preset_kd_store", "ce_aug"),
          "stage1_cut_cost": ("stage1_full", "stage1_cut"),
          "stage1_cached_cost": ("stage1_full", "stage1_cached")}


def ratios_of(cases: list[Case], rows: list[StepRow]) -> dict[str, float | str]:
    """The ratios whose rows were measured (``--only`` may leave some out)."""
    row = {case.key: r for case, r in zip(cases, rows, strict=True) if case.key}
    rate = {key: r.images_per_s for key, r in row.items()}
    ratios: dict[str, float | str] = {name: rate[a] / rate[b] for name, (a, b) in RATIOS.items()
                                      if a in rate and b in rate}
    if "kd_live_aug" in row:
        ratios["data_wait_share"] = row["kd_live_aug"].data_wait_share
    ratios["store_build_share"] = AUGMENTATION.views / PROTOCOL_EPOCHS
    live = [(case, r) for case, r in zip(cases, rows, strict=True) if case.step == "kd" and case.teacher == "live"
            and not case.augmented]
    fp32 = [(case, r) for case, r in live if case.speed.autocast is None]
    bf16 = [r.images_per_s for case, r in live if case.speed.autocast]
    if "kd_off" in rate and fp32 and bf16:
        fastest, fastest_row = max(fp32, key=lambda pair: pair[1].images_per_s)
        teacher, _, student = fastest.settings.partition("; ")
        ratios |= {"kd_fast_over_baseline": fastest_row.images_per_s / rate["kd_off"],
                   "kd_fast_bf16_over_baseline": max(bf16) / rate["kd_off"],
                   "fastest_teacher_option": teacher, "fastest_student_option": student or "student contiguous, eager"}
    cut = [r.images_per_s for case, r in zip(cases, rows, strict=True)
           if case.step == "hint" and case.teacher == "live" and case.cut and case.speed != ALL_OFF]
    if "stage1_full" in rate and cut:
        ratios["stage1_fast_cost"] = rate["stage1_full"] / max(cut)
    return ratios


RATIO_LINES = [  # (ratio, what it is, unit)
    ("kd_cached_cost", "KD step, teacher logits cached: cost relative to a CE step", "×"),
    ("kd_store_cost", "KD step reading the store (every view filled): cost relative to a CE step, augmented batches",
     "×"),
    ("kd_fast_store_speedup", "--fast KD step reading the store / CE step with the defaults, augmented batches", "×"),
    ("kd_preset_store_speedup", "the same with the fixed preset / CE step with the defaults, augmented batches", "×"),
    ("store_build_share", "teacher forwards to fill the store / those of a live 240-epoch run (162 views / 240)", ""),
    ("data_wait_share", "share of a KD epoch (teacher live, augmented batches) spent waiting for its batches", "%"),
    ("kd_fast_over_baseline", "KD step, teacher live, the fastest options with the student in fp32 / every option off",
     "×"),
    ("kd_fast_bf16_over_baseline", "the same with the student under bf16 autocast / every option off", "×"),
    ("stage1_cut_cost", "FitNet stage 1, cut forwards: cost relative to full forwards, every other option off", "×"),
    ("stage1_fast_cost", "FitNet stage 1, cut + the fastest live options: cost relative to full forwards, every "
                         "option off", "×"),
    ("stage1_cached_cost", "FitNet stage 1, cut + cached hints (the defaults): cost relative to full forwards, every "
                           "option off", "×"),
]


def format_step_table(rows: list[StepRow], ratios: dict[str, float | str]) -> str:
    """The default rows side by side (defaults, the fixed preset, ``--fast``'s measured choice, its ratio to the
    defaults), any others below, then the ratios and the choice."""
    by = {(r.step, r.settings): r for r in rows}
    rate = lambda r: f"{r.images_per_s:,.0f}" if r else "—"  # noqa: E731
    lines = ["| step | defaults | fixed preset | --fast (measured choice) | --fast / defaults |",
             "|---|---:|---:|---:|---:|"]
    for _, label, *_ in STEPS:
        d, p, f = (by.get((label, settings)) for settings in ("defaults", "fixed preset", "--fast"))
        if d or p or f:
            notes = "; ".join(r.note for r in (d, p, f) if r and r.note)
            speedup = f"{f.images_per_s / d.images_per_s:.2f}×" if d and f else "—"
            lines.append(f"| {label}{f' ({notes})' if notes else ''} | {rate(d)} | {rate(p)} | {rate(f)} | {speedup} |")
    others = [r for r in rows if r.settings not in ("defaults", "fixed preset", "--fast")]
    if others:
        lines += ["", "| step | options | images/s | notes |", "|---|---|---:|---|"]
        lines += [f"| {r.step} | {r.settings} | {rate(r)} | {r.note} |" for r in others]
    lines += ["", "```"]
    for key, text, unit in RATIO_LINES:
        if key in ratios:
            lines.append(f"{text}: " + (f"{100 * ratios[key]:.1f}%" if unit == "%" else f"{ratios[key]:.2f}{unit}"))
    if "fast_choice" in ratios:
        lines.append(f"--fast chose (measured in {ratios['fast_tuning_s']:.1f} s): {ratios['fast_choice']}")
    if "fastest_teacher_option" in ratios:
        lines.append(f"the fastest options, teacher live, student fp32: {ratios['fastest_teacher_option']}; "
                     f"{ratios['fastest_student_option']}")
    return "\n".join(lines + ["```"])
