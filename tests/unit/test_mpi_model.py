"""The Fellegi–Sunter model of the MPI: comparison levels on crafted pairs, the
vectorised comparisons, blocking and scoring against their one-pair references,
EM against known parameters, λ scaling and the JSON round trip."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest
from rapidfuzz.distance import DamerauLevenshtein

from medalliance.domains.patients import identity
from medalliance.domains.patients.mpi import blocking, comparisons, features, synthetic, training
from medalliance.domains.patients.mpi.comparisons import COMPARISONS, level_matrix, levels
from medalliance.domains.patients.mpi.features import Features, FeatureTable
from medalliance.domains.patients.mpi.model import (
    MatchModel,
    default_model,
    expectation_maximisation,
    probabilities,
    probability,
)

NAMES = [c.name for c in COMPARISONS]


def person(**fields: object) -> Features:
    values: dict[str, object] = {
        "family_name": "王",
        "given_name": "伟",
        "birth_date": "1975-03-08",
        "sex": "M",
        "id_number": "330102197503081234",
        "phones": ["13812345678"],
        "street": "和平街12号",
        "city": "西湖区",
        "postcode": "330102",
    }
    values.update(fields)
    return features.build("r", **values)  # type: ignore[arg-type]


def level_of(a: Features, b: Features, comparison: str) -> int | None:
    return levels(a, b)[NAMES.index(comparison)]


# -- comparison levels on crafted pairs ----------------------------------------------


@pytest.mark.parametrize(
    ("change", "comparison", "expected"),
    [
        ({}, "given_name", 0),
        ({"given_name": "玮"}, "given_name", 1),  # homophone: same pinyin, other character
        ({"given_name": "维"}, "given_name", 1),
        ({"family_name": "汪"}, "family_name", 1),  # 汪 wāng / 王 wáng: toneless equal
        ({"given_name": "强"}, "given_name", 4),
        ({"given_name": None}, "given_name", None),  # missing: no evidence either way
        ({"birth_date": "1975-08-03"}, "birth_date", 1),  # day and month swapped
        ({"birth_date": "1975-03-09"}, "birth_date", 1),  # one digit
        ({"birth_date": "1975-11-23"}, "birth_date", 2),  # same year
        ({"birth_date": "1957-03-08"}, "birth_date", 1),  # adjacent digits transposed
        ({"birth_date": "1980-03-08"}, "birth_date", 3),
        ({"id_number": "330102197503081235"}, "id_number", 1),  # one-digit typo
        ({"id_number": "330102197503082134"}, "id_number", 1),  # transposition
        ({"id_number": "33010219750308123"}, "id_number", 1),  # a digit lost
        ({"id_number": "330102197503085634"}, "id_number", 2),
        ({"id_number": "510105198801020017"}, "id_number", 3),
        ({"phones": ["13812345679", "13900000000"]}, "phone", 1),
        ({"phones": ["13900000000", "13812345678"]}, "phone", 0),
        ({"phones": []}, "phone", None),
        ({"sex": "F"}, "sex", 1),
        ({"street": "和平街21号"}, "street", 1),
        ({"city": "上城区"}, "locality", 1),
        ({"city": "上城区", "postcode": "330101"}, "locality", 2),
    ],
)
def test_levels_of_crafted_pairs(
    change: dict[str, object], comparison: str, expected: int | None
) -> None:
    assert level_of(person(), person(**change), comparison) == expected


def test_swapped_family_and_given_names_are_similar_not_different() -> None:
    a = features.build("a", family_name="Smith", given_name="Anna")
    b = features.build("b", family_name="Anna", given_name="Smith")
    assert level_of(a, b, "family_name") == 2
    assert level_of(a, b, "given_name") == 2
    assert level_of(a, b, "family_name") == level_of(b, a, "family_name")


def test_a_full_name_is_split_into_family_and_given() -> None:
    chinese = features.build("a", full_name="欧阳娜娜")
    assert (chinese.family, chinese.given, chinese.family_pinyin) == ("欧阳", "娜娜", "ouyang")
    assert features.build("c", full_name="王小明").family == "王"
    assert features.build("d", full_name="欧阳").family == "欧"  # no given name: not split
    latin = features.build("b", full_name="Anna Maria Smith")
    assert (latin.family, latin.given) == ("smith", "anna maria")


# -- vectorised comparisons, blocking and scoring = the one-pair references -----------


def _mutate(rng: random.Random, text: str) -> str:
    chars = list(text)
    position = rng.randrange(len(chars))
    operation = rng.choice(["substitute", "transpose", "delete", "insert", "move"])
    if operation == "substitute":
        chars[position] = rng.choice("0123456789X")
    elif operation == "transpose" and position < len(chars) - 1:
        chars[position], chars[position + 1] = chars[position + 1], chars[position]
    elif operation == "delete" and len(chars) > 1:
        del chars[position]
    elif operation == "insert":
        chars.insert(position, rng.choice("0123456789"))
    elif operation == "move":
        chars.insert(rng.randrange(len(chars)), chars.pop(position))
    return "".join(chars)


@pytest.fixture(scope="module")
def sample() -> list[Features]:
    """A synthetic registry plus records with every kind of near miss."""
    records = [
        features.build(
            r.record_id,
            family_name=r.family_name,
            given_name=r.given_name,
            birth_date=r.birth_date,
            sex="M" if r.sex.value == "male" else "F",
            id_number=r.id_number,
            phones=[r.phone] if r.phone else [],
            street=r.street,
            city=r.district,
            postcode=r.postcode,
        )
        for r in synthetic.registry(1500, seed=3)
    ]
    rng = random.Random(5)
    bases = ["110101199003074518", "1234567", "13812345678", "19900307"]
    for k in range(1500):
        number = rng.choice(bases)
        for _ in range(rng.choice([1, 1, 2, 3])):
            number = _mutate(rng, number)
        born = number if len(number) == 8 else rng.choice(["19900307", "19900703", None])
        records.append(
            features.build(
                f"x{k}",
                family_name=rng.choice(["王", "汪", "Smith", "Smyth", "Anna", None]),
                given_name=rng.choice(["伟", "玮", "Anna", "Ana", "Smith", None]),
                id_number=number,
                birth_date=born,
                sex=rng.choice(["M", "F", None]),
                phones=[_mutate(rng, "13812345678"), number][: rng.choice([0, 1, 2])],
                street=rng.choice(["和平街12号", "和平街21号", "5 Main St", None]),
                city=rng.choice(["西湖区", "上城区", None]),
                postcode=rng.choice(["330102", "330101", None]),
            )
        )
    return records


def _pairs(records: list[Features], count: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    left = rng.integers(0, len(records), count)
    right = rng.integers(0, len(records), count)
    near = np.arange(len(records) - 1500, len(records))  # the near misses among themselves
    left = np.concatenate([left, rng.choice(near, count)])
    right = np.concatenate([right, rng.choice(near, count)])
    return left, right


def test_level_matrix_equals_levels_pair_by_pair(sample: list[Features]) -> None:
    table = FeatureTable.of(sample)
    left, right = _pairs(sample, 20_000)
    matrix = level_matrix(table, left, right)
    expected = np.array(
        [
            [-1 if x is None else x for x in levels(sample[a], sample[b])]
            for a, b in zip(left, right, strict=True)
        ],
        dtype=np.int8,
    )
    assert np.array_equal(matrix, expected)
    assert len(np.unique(matrix[:, NAMES.index("id_number")])) == 5  # every level was met


def test_edit_distances_settled_in_numpy_equal_damerau_levenshtein() -> None:
    rng = random.Random(11)
    values = ["330102197503081234", "1234567", "13812345678"]
    values += [_mutate(rng, rng.choice(values)) for _ in range(3000)]
    vocabulary = features.Vocabulary()
    codes = vocabulary.encode(values)
    a = np.array([rng.randrange(len(values)) for _ in range(20_000)])
    b = np.array([rng.randrange(len(values)) for _ in range(20_000)])
    for cutoff in (1, 2):
        found = comparisons._edit_distances(
            vocabulary, codes[a], codes[b], cutoff=cutoff, workers=1
        )
        expected = [
            min(DamerauLevenshtein.distance(values[x], values[y]), cutoff + 1)
            for x, y in zip(a, b, strict=True)
        ]
        assert found.tolist() == expected


def test_pair_weights_equal_score_and_probabilities_agree(sample: list[Features]) -> None:
    table = FeatureTable.of(sample)
    model = default_model().for_population(len(sample))
    left, right = _pairs(sample, 3000)
    weights = model.pair_weights(level_matrix(table, left, right), table=table, left=left)
    scores = [model.score(sample[a], sample[b]) for a, b in zip(left, right, strict=True)]
    assert weights.tolist() == [s.weight for s in scores]  # the same floats, not just close
    assert np.allclose(probabilities(weights), [s.probability for s in scores], rtol=0, atol=1e-15)
    assert [probability(w) for w in weights.tolist()] == [s.probability for s in scores]


def test_exact_name_agreement_weighs_by_frequency() -> None:
    model = default_model()
    common = model.score(person(), person(id_number=None))
    rare = model.score(
        person(family_name="欧阳", given_name="娜娜"),
        person(family_name="欧阳", given_name="娜娜", id_number=None),
    )
    assert rare.contributions["family_name"] > common.contributions["family_name"]


@pytest.mark.parametrize("linkage", [False, True])
def test_candidate_pair_arrays_equal_candidate_pairs(sample: list[Features], linkage: bool) -> None:
    table = FeatureTable.of(sample)
    if linkage:
        left, right = np.arange(0, len(sample), 2), np.arange(1, len(sample), 2)
        pairs = blocking.candidate_pairs(
            [sample[k] for k in left], [sample[k] for k in right], max_block=30
        )
        expected = {(int(left[a]), int(right[b])) for a, b in pairs}
        found = blocking.candidate_pair_arrays(table, left, right, max_block=30)
    else:
        expected = set(blocking.candidate_pairs(sample, max_block=30))
        found = blocking.candidate_pair_arrays(table, np.arange(len(sample)), max_block=30)
    assert set(zip(found[0].tolist(), found[1].tolist(), strict=True)) == expected
    assert len(found[0]) == len(expected)  # each pair once


def test_an_id_within_one_edit_shares_a_variant() -> None:
    number = "330102197503081234"
    for other in ("330102197503081235", "330102197503082134", "33010219750308123"):
        assert set(blocking.id_variants(number)) & set(blocking.id_variants(other))
    assert not set(blocking.id_variants(number)) & set(blocking.id_variants("330102197503085634"))


def test_training_samples_pairs_of_one_block_uniformly() -> None:
    table = FeatureTable.of([person(), person(), person(), person(birth_date="1980-01-01")])
    rule = blocking.BlockingRule("birth_date", ("birth_date",))
    rng = np.random.default_rng(1)
    i, j = blocking.sample_block_pairs(
        table, np.arange(4), None, rule, samples=10, max_block=10, rng=rng
    )
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == [
        (0, 1),
        (0, 2),
        (1, 2),
    ]  # all there are


# -- estimation -----------------------------------------------------------------------


TRUE_M = {
    "family_name": [0.97, 0.01, 0.01, 0.005, 0.005],
    "given_name": [0.8, 0.15, 0.03, 0.01, 0.01],
    "birth_date": [0.7, 0.2, 0.08, 0.02],
    "sex": [0.99, 0.01],
    "id_number": [0.75, 0.2, 0.03, 0.02],
    "phone": [0.7, 0.05, 0.25],
    "street": [0.6, 0.1, 0.1, 0.2],
    "locality": [0.9, 0.05, 0.05],
}
TRUE_U = {
    "family_name": [0.03, 0.01, 0.02, 0.04, 0.9],
    "given_name": [0.005, 0.005, 0.01, 0.03, 0.95],
    "birth_date": [0.001, 0.004, 0.015, 0.98],
    "sex": [0.5, 0.5],
    "id_number": [0.0001, 0.0005, 0.001, 0.9984],
    "phone": [0.0005, 0.001, 0.9985],
    "street": [0.005, 0.01, 0.1, 0.885],
    "locality": [0.06, 0.1, 0.84],
}


def _simulated(pairs: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A level matrix drawn from TRUE_M for matches and TRUE_U for the rest."""
    rng = np.random.default_rng(seed)
    is_match = rng.random(pairs) < share
    matrix = np.empty((pairs, len(COMPARISONS)), dtype=np.int8)
    for k, comp in enumerate(COMPARISONS):
        m = rng.choice(len(comp.levels), pairs, p=TRUE_M[comp.name])
        u = rng.choice(len(comp.levels), pairs, p=TRUE_U[comp.name])
        matrix[:, k] = np.where(is_match, m, u)
    return matrix, is_match


def test_em_recovers_m_and_lambda_from_known_parameters() -> None:
    matrix, is_match = _simulated(200_000, 0.02, seed=3)
    m, prior = expectation_maximisation(matrix, TRUE_U, iterations=100, tolerance=1e-7)
    assert prior == pytest.approx(is_match.mean(), rel=0.05)
    for name, levels_ in TRUE_M.items():
        assert m[name] == pytest.approx(levels_, abs=0.02), name


def test_training_recovers_m_of_the_true_pairs_of_a_synthetic_registry() -> None:
    records = synthetic.registry(8000, seed=21)
    built = [
        features.build(
            r.record_id,
            family_name=r.family_name,
            given_name=r.given_name,
            birth_date=r.birth_date,
            sex="M" if r.sex.value == "male" else "F",
            id_number=r.id_number,
            phones=[r.phone] if r.phone else [],
            street=r.street,
            city=r.district,
            postcode=r.postcode,
        )
        for r in records
    ]
    model = training.train(built, description="test")
    by_person: dict[int, list[int]] = {}
    for k, r in enumerate(records):
        by_person.setdefault(r.person, []).append(k)
    true_pairs = [(a, b) for g in by_person.values() for a in g for b in g if a < b]
    table = FeatureTable.of(built)
    matrix = level_matrix(
        table, np.array([a for a, _ in true_pairs]), np.array([b for _, b in true_pairs])
    )
    for k, comp in enumerate(COMPARISONS):
        present = matrix[:, k][matrix[:, k] >= 0]
        truth = np.bincount(present, minlength=len(comp.levels)) / len(present)
        assert model.m[comp.name] == pytest.approx(truth.tolist(), abs=0.05), comp.name
    duplicates = sum(len(g) * (len(g) - 1) / 2 for g in by_person.values())
    assert model.matches_per_record == pytest.approx(2 * duplicates / len(records), rel=0.15)


# -- λ and persistence ----------------------------------------------------------------


def test_for_population_scales_lambda_with_the_index() -> None:
    model = default_model()
    assert model.matches_per_record is not None
    small, large = model.for_population(10_000), model.for_population(1_000_000)
    assert small.prior == pytest.approx(model.matches_per_record / 10_000)
    assert large.prior == pytest.approx(small.prior / 100)
    assert large.m == model.m and large.u == model.u  # only λ changes
    assert model.for_population(1) is model
    assert model.for_population(2).prior <= 0.5
    unscaled = MatchModel(prior=0.01, m=model.m, u=model.u)
    assert unscaled.for_population(1_000_000) is unscaled
    a, b = person(), person(id_number=None, phones=["13900000000"])
    assert large.score(a, b).probability < small.score(a, b).probability


def test_a_returning_patient_who_moved_goes_to_review_in_a_small_index() -> None:
    """Same name, sex and birth date; another district, street and phone; no ID card:
    a person should decide. A namesake born another day is kept apart."""
    scorer = default_model().for_population(2_000)
    before = person()
    moved = person(
        id_number=None,
        phones=["13911112222"],
        street="解放路300号",
        city="滨江区",
        postcode="330108",
    )
    assert scorer.decide(scorer.score(moved, before).probability) == "review"
    namesake = person(
        birth_date="1981-06-20",
        id_number=None,
        phones=["13911112222"],
        street="解放路300号",
        city="滨江区",
        postcode="330108",
    )
    assert scorer.decide(scorer.score(namesake, before).probability) == "distinct"
    # In an index of a million the same evidence is no longer enough to ask.
    large = default_model().for_population(1_000_000)
    assert large.decide(large.score(moved, before).probability) == "distinct"


def test_json_round_trip_keeps_every_parameter_and_score() -> None:
    model = default_model()
    again = MatchModel.from_json(model.to_json())
    assert again == model
    a, b = person(), person(given_name="玮", birth_date="1975-08-03")
    assert again.score(a, b) == model.score(a, b)
    assert "medalliance mpi train" in model.trained_on


@pytest.fixture
def _no_numpy_warnings() -> Iterator[None]:
    with np.errstate(all="raise"):
        yield


@pytest.mark.usefixtures("_no_numpy_warnings")
def test_probabilities_saturate_without_overflow() -> None:
    weights = np.array([-1e6, -61.0, -60.0, 0.0, 60.0, 61.0, 1e6])
    assert probabilities(weights).tolist() == [probability(w) for w in weights.tolist()]


# -- the synthetic registry -------------------------------------------------------------


def test_invented_people_never_share_a_resident_id() -> None:
    first = synthetic.registry(3000, duplicate_rate=0.0, seed=5)
    taken = {r.id_number for r in first if r.id_number}
    assert len(taken) == len(first)
    # The same seed draws the same numbers again: every one clashes and must be moved.
    again = synthetic.registry(3000, duplicate_rate=0.0, seed=5, taken_ids=set(taken))
    numbers = [r.id_number for r in again if r.id_number]
    assert len(set(numbers)) == len(again)
    assert not set(numbers) & taken
    for rec in again:
        assert rec.id_number is not None
        resident = identity.parse(rec.id_number)
        identity.check_agreement(resident, birth_date=rec.birth_date, sex=rec.sex)
    # Nothing but the number (and, only when a day is full, the birth date) changes.
    assert [(r.family_name, r.given_name, r.phone) for r in again] == [
        (r.family_name, r.given_name, r.phone) for r in first
    ]
