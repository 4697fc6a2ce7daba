"""The JobManager's pure parts (managers.jobs): engine-mode routing, workload pods per the
contract, pod names, jobs per node, stale pods, and the job state machine."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringrift_operator.api.common import (
    ANNOTATION_EPOCH,
    LABEL_ATTEMPT,
    LABEL_CONFIG,
    LABEL_JOB_KIND,
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    OPERATOR_NAME,
    EngineMode,
)
from ringrift_operator.api.contract import (
    CONTAINER_DATA_DIR,
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    HOST_DATA_DIR,
    Env,
    JobKind,
)
from ringrift_operator.managers.gpus import GpuClass
from ringrift_operator.managers.jobs import (
    DEFAULT_RESOURCES,
    Attempt,
    Distributed,
    IllegalTransition,
    JobEvent,
    JobPhase,
    OwnerRef,
    PodResources,
    Profile,
    SelfplayFlavor,
    StaleReason,
    WorkloadScript,
    WorkloadSettings,
    allowed_events,
    attempt_seed,
    build_demand,
    build_export_pod,
    build_gauntlet_pod,
    build_selfplay_pod,
    build_training_pod,
    count_jobs_per_node,
    decide_failed_attempt,
    decide_selfplay_flavor,
    detect_stale_pods,
    is_dispatch_expired,
    is_finished,
    is_terminal,
    label_value,
    pod_name,
    script_for,
    transition,
    with_running_jobs,
)
from ringrift_operator.managers.nodes import NodeInfo, TaintEffect, Toleration
from ringrift_operator.managers.pods import PodInfo, PodPhase

Pod = dict[str, Any]
SETTINGS = WorkloadSettings()
OWNER = OwnerRef(api_version="ringrift.ai/v1alpha1", kind="SelfplayJob", name="sq8", uid="u-1")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def attempt(**fields: Any) -> Attempt:
    base = Attempt(owner=OWNER, namespace="ringrift", config="square8_2p", number=1, epoch=7)
    return replace(base, **fields)


def env_of(pod: Pod) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}


def container(pod: Pod) -> dict[str, Any]:
    c: dict[str, Any] = pod["spec"]["containers"][0]
    return c


def selfplay(mode: EngineMode = EngineMode.GUMBEL_MCTS, gpus: int = 1, **fields: Any) -> Pod:
    return build_selfplay_pod(
        attempt=attempt(**fields),
        settings=SETTINGS,
        engine_mode=mode,
        games=500,
        gpus=gpus,
        model_path="/data/models/square8_2p/g3.pt",
    )


def gauntlet(**kwargs: Any) -> Pod:
    args: dict[str, Any] = {
        "model_path": "/data/models/square8_2p/g4.pt",
        "opponents": ["/data/models/square8_2p/g3.pt", "heuristic"],
        "games": 50,
    }
    return build_gauntlet_pod(attempt=attempt(), settings=SETTINGS, **(args | kwargs))


BUILDERS: dict[str, Callable[[], Pod]] = {
    "selfplay-gpu": lambda: selfplay(EngineMode.NNUE_GUIDED),
    "selfplay-hybrid": lambda: selfplay(EngineMode.MCTS),
    "selfplay-cpu": lambda: selfplay(EngineMode.HEURISTIC, gpus=0),
    "export": lambda: build_export_pod(attempt=attempt(), settings=SETTINGS),
    "training": lambda: build_training_pod(attempt=attempt(), settings=SETTINGS),
    "gauntlet": gauntlet,
}
EVERY_POD = pytest.mark.parametrize("build", list(BUILDERS.values()), ids=list(BUILDERS))


def pod_info(name: str = "p", **fields: Any) -> PodInfo:
    """A bound, running operator pod of a live owner."""
    base = PodInfo(
        name=name,
        labels={LABEL_MANAGED_BY: OPERATOR_NAME, LABEL_OWNER_KIND: "SelfplayJob"},
        node_name="node-a",
        phase=PodPhase.RUNNING,
        owner_uid="live",
        created_at=1000.0,
        bound_at=1000.0,
        started_at=1010.0,
    )
    return replace(base, **fields)


class TestRouting:
    @pytest.mark.parametrize(
        ("mode", "script"),
        [
            pytest.param(EngineMode.MAXN, WorkloadScript.SEARCH_SELFPLAY, id="maxn"),
            pytest.param(EngineMode.BRS, WorkloadScript.SEARCH_SELFPLAY, id="brs"),
            pytest.param(EngineMode.MCTS, WorkloadScript.SEARCH_SELFPLAY, id="mcts"),
            pytest.param(EngineMode.GUMBEL_MCTS, WorkloadScript.SEARCH_SELFPLAY, id="gumbel"),
            pytest.param(EngineMode.POLICY_ONLY, WorkloadScript.SEARCH_SELFPLAY, id="policy"),
            pytest.param(EngineMode.NN_DESCENT, WorkloadScript.SEARCH_SELFPLAY, id="descent"),
            pytest.param(EngineMode.NN_MINIMAX, WorkloadScript.SEARCH_SELFPLAY, id="minimax"),
            pytest.param(EngineMode.RANDOM, WorkloadScript.GPU_SELFPLAY, id="random"),
            pytest.param(EngineMode.HEURISTIC, WorkloadScript.GPU_SELFPLAY, id="heuristic"),
            pytest.param(EngineMode.NNUE_GUIDED, WorkloadScript.GPU_SELFPLAY, id="nnue"),
        ],
    )
    def test_engine_mode_picks_the_script(self, mode: EngineMode, script: WorkloadScript) -> None:
        assert script_for(JobKind.SELFPLAY, engine_mode=mode) is script

    @pytest.mark.parametrize(
        ("kind", "script"),
        [
            pytest.param(JobKind.EXPORT, WorkloadScript.EXPORT, id="export"),
            pytest.param(JobKind.TRAINING, WorkloadScript.TRAINING, id="training"),
            pytest.param(JobKind.GAUNTLET, WorkloadScript.GAUNTLET, id="gauntlet"),
        ],
    )
    def test_other_kinds_have_one_script(self, kind: JobKind, script: WorkloadScript) -> None:
        assert script_for(kind) is script

    def test_selfplay_without_engine_mode_is_refused(self) -> None:
        with pytest.raises(ValueError, match="engine mode"):
            script_for(JobKind.SELFPLAY)

    @pytest.mark.parametrize(
        ("mode", "gpus", "flavor"),
        [
            pytest.param(EngineMode.HEURISTIC, 0, SelfplayFlavor.CPU, id="heuristic-cpu"),
            pytest.param(EngineMode.RANDOM, 0, SelfplayFlavor.CPU, id="random-cpu"),
            pytest.param(EngineMode.MAXN, 0, SelfplayFlavor.CPU, id="maxn-cpu"),
            pytest.param(EngineMode.HEURISTIC, 1, SelfplayFlavor.GPU, id="heuristic-gpu"),
            pytest.param(EngineMode.NNUE_GUIDED, 1, SelfplayFlavor.GPU, id="nnue-gpu"),
            pytest.param(EngineMode.GUMBEL_MCTS, 1, SelfplayFlavor.HYBRID, id="gumbel-hybrid"),
            pytest.param(EngineMode.MCTS, 2, SelfplayFlavor.HYBRID, id="mcts-hybrid"),
        ],
    )
    def test_selfplay_flavor(self, mode: EngineMode, gpus: int, flavor: SelfplayFlavor) -> None:
        assert decide_selfplay_flavor(engine_mode=mode, gpus=gpus) is flavor

    @pytest.mark.parametrize(
        "mode",
        [EngineMode.GUMBEL_MCTS, EngineMode.NNUE_GUIDED, EngineMode.POLICY_ONLY],
        ids=["gumbel", "nnue", "policy"],
    )
    def test_network_engines_need_a_gpu(self, mode: EngineMode) -> None:
        with pytest.raises(ValueError, match="needs a GPU"):
            decide_selfplay_flavor(engine_mode=mode, gpus=0)


class TestSettings:
    @pytest.mark.parametrize(
        ("script", "command"),
        [
            pytest.param(
                WorkloadScript.SEARCH_SELFPLAY,
                ["python3", "scripts/generate_gumbel_selfplay.py"],
                id="search-selfplay",
            ),
            pytest.param(
                WorkloadScript.GPU_SELFPLAY,
                ["python3", "scripts/run_gpu_selfplay.py"],
                id="gpu-selfplay",
            ),
            pytest.param(
                WorkloadScript.EXPORT, ["python3", "scripts/export_replay_dataset.py"], id="export"
            ),
            pytest.param(WorkloadScript.TRAINING, ["python3", "scripts/train.py"], id="training"),
            pytest.param(
                WorkloadScript.GAUNTLET,
                ["python3", "scripts/run_model_comparison_tournament.py"],
                id="gauntlet",
            ),
        ],
    )
    def test_default_commands_are_the_seed_scripts(
        self, script: WorkloadScript, command: list[str]
    ) -> None:
        assert SETTINGS.command(script) == command

    def test_defaults(self) -> None:
        assert SETTINGS.data_host_path == HOST_DATA_DIR
        assert SETTINGS.allowed_archs == ("amd64",)
        assert SETTINGS.image_pull_policy == "IfNotPresent"
        assert SETTINGS.resources_for(Profile.TRAINING) == DEFAULT_RESOURCES[Profile.TRAINING]

    def test_partial_overrides_keep_the_other_defaults(self) -> None:
        settings = WorkloadSettings(
            commands={WorkloadScript.TRAINING: ("ringrift-workload", "train")},
            resources={Profile.EXPORT: PodResources(cpu_millis=500, memory_mib=1024)},
        )
        assert settings.command(WorkloadScript.TRAINING) == ["ringrift-workload", "train"]
        assert settings.command(WorkloadScript.EXPORT)[1] == "scripts/export_replay_dataset.py"
        assert settings.resources_for(Profile.EXPORT).cpu_millis == 500
        assert settings.resources_for(Profile.GAUNTLET) == DEFAULT_RESOURCES[Profile.GAUNTLET]

    def test_hybrid_gets_more_cpu_than_gpu_selfplay(self) -> None:
        hybrid = DEFAULT_RESOURCES[Profile.SELFPLAY_HYBRID]
        assert hybrid.cpu_millis > DEFAULT_RESOURCES[Profile.SELFPLAY_GPU].cpu_millis


class TestEveryPod:
    """What the workload contract and the security baseline ask of every pod."""

    @EVERY_POD
    def test_placed_by_the_operator_and_never_restarted(self, build: Callable[[], Pod]) -> None:
        spec = build()["spec"]
        assert spec["schedulerName"] == OPERATOR_NAME
        assert spec["restartPolicy"] == "Never"
        assert spec["automountServiceAccountToken"] is False

    @EVERY_POD
    def test_owned_by_the_job(self, build: Callable[[], Pod]) -> None:
        (ref,) = build()["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "ringrift.ai/v1alpha1",
            "kind": "SelfplayJob",
            "name": "sq8",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }

    @EVERY_POD
    def test_labels_and_epoch(self, build: Callable[[], Pod]) -> None:
        metadata = build()["metadata"]
        assert metadata["namespace"] == "ringrift"
        assert metadata["labels"] | {LABEL_JOB_KIND: "?"} == {
            LABEL_MANAGED_BY: OPERATOR_NAME,
            LABEL_JOB_KIND: "?",
            LABEL_OWNER_KIND: "SelfplayJob",
            LABEL_OWNER_NAME: "sq8",
            LABEL_CONFIG: "square8_2p",
            LABEL_ATTEMPT: "1",
        }
        assert metadata["annotations"] == {ANNOTATION_EPOCH: "7"}

    @EVERY_POD
    def test_contract_env(self, build: Callable[[], Pod]) -> None:
        pod = build()
        env = env_of(pod)
        assert env[Env.JOB_KIND] == pod["metadata"]["labels"][LABEL_JOB_KIND]
        assert env[Env.JOB_NAME] == "sq8"
        assert env[Env.CONFIG] == "square8_2p"
        assert (env[Env.BOARD], env[Env.PLAYERS]) == ("square8", "2")
        assert env[Env.DATA_DIR] == CONTAINER_DATA_DIR
        assert env[Env.OUTPUT_DIR] == CONTAINER_DATA_DIR  # the contract: layout under DATA_DIR
        assert (env[Env.EPOCH], env[Env.ATTEMPT]) == ("7", "1")
        assert env[Env.SEED].isdigit()

    @EVERY_POD
    def test_data_dir_and_termination_message(self, build: Callable[[], Pod]) -> None:
        pod = build()
        c = container(pod)
        assert {"name": "data", "mountPath": CONTAINER_DATA_DIR} in c["volumeMounts"]
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
        assert c["terminationMessagePath"] == "/dev/termination-log"
        assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["data"]["hostPath"]["path"] == HOST_DATA_DIR
        assert volumes["tmp"] == {"name": "tmp", "emptyDir": {}}

    @EVERY_POD
    def test_restricted_security_context(self, build: Callable[[], Pod]) -> None:
        pod = build()
        assert pod["spec"]["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        sc = container(pod)["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True

    @EVERY_POD
    def test_required_arch_affinity(self, build: Callable[[], Pod]) -> None:
        terms = build()["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        assert terms == [
            {
                "matchExpressions": [
                    {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                ]
            }
        ]

    @EVERY_POD
    def test_is_plain_json_with_a_valid_name(self, build: Callable[[], Pod]) -> None:
        pod = build()
        assert json.loads(json.dumps(pod)) == pod
        assert DNS_LABEL.match(pod["metadata"]["name"])

    @EVERY_POD
    def test_image_from_settings(self, build: Callable[[], Pod]) -> None:
        c = container(build())
        assert (c["image"], c["imagePullPolicy"]) == (SETTINGS.image, "IfNotPresent")


class TestGpuAndCpuPods:
    @pytest.mark.parametrize(
        ("name", "gpus", "cpu", "memory"),
        [
            pytest.param("selfplay-gpu", "1", "2000m", "8192Mi", id="selfplay-gpu"),
            pytest.param("selfplay-hybrid", "1", "8000m", "16384Mi", id="selfplay-hybrid"),
            pytest.param("selfplay-cpu", None, "4000m", "4096Mi", id="selfplay-cpu"),
            pytest.param("export", None, "2000m", "8192Mi", id="export"),
            pytest.param("training", "1", "4000m", "8192Mi", id="training"),
            pytest.param("gauntlet", "1", "2000m", "8192Mi", id="gauntlet"),
        ],
    )
    def test_resources(self, name: str, gpus: str | None, cpu: str, memory: str) -> None:
        resources = container(BUILDERS[name]())["resources"]
        assert resources["requests"]["cpu"] == cpu
        assert resources["requests"]["memory"] == resources["limits"]["memory"] == memory
        assert "cpu" not in resources["limits"]
        assert resources["requests"].get("nvidia.com/gpu") == gpus
        assert resources["limits"].get("nvidia.com/gpu") == gpus

    @pytest.mark.parametrize(
        ("name", "tolerates_gpu_taint"),
        [
            pytest.param("selfplay-gpu", True, id="gpu-pod"),
            pytest.param("training", True, id="training"),
            pytest.param("selfplay-cpu", False, id="cpu-pod"),
            pytest.param("export", False, id="export"),
        ],
    )
    def test_gpu_toleration(self, name: str, tolerates_gpu_taint: bool) -> None:
        gpu_toleration = {"operator": "Exists", "key": "nvidia.com/gpu", "effect": "NoSchedule"}
        tolerations = BUILDERS[name]()["spec"]["tolerations"]
        assert (gpu_toleration in tolerations) is tolerates_gpu_taint

    def test_job_tolerations_come_first_and_gpu_toleration_is_not_repeated(self) -> None:
        tolerations = (
            Toleration("dedicated", "Equal", "ml", TaintEffect.NO_SCHEDULE),
            Toleration("nvidia.com/gpu", "Exists", effect=TaintEffect.NO_SCHEDULE),
        )
        pod = selfplay(tolerations=tolerations)
        assert pod["spec"]["tolerations"] == [
            {"operator": "Equal", "key": "dedicated", "value": "ml", "effect": "NoSchedule"},
            {"operator": "Exists", "key": "nvidia.com/gpu", "effect": "NoSchedule"},
        ]

    def test_multi_gpu_training(self) -> None:
        pod = build_training_pod(attempt=attempt(), settings=SETTINGS, gpus=4)
        assert container(pod)["resources"]["limits"]["nvidia.com/gpu"] == "4"

    def test_training_always_asks_for_a_gpu(self) -> None:
        pod = build_training_pod(attempt=attempt(), settings=SETTINGS, gpus=0)
        assert container(pod)["resources"]["limits"]["nvidia.com/gpu"] == "1"


class TestPodOptions:
    def test_active_deadline_when_given(self) -> None:
        assert selfplay(active_deadline_seconds=3600)["spec"]["activeDeadlineSeconds"] == 3600
        assert "activeDeadlineSeconds" not in selfplay()["spec"]

    def test_node_selector_when_given(self) -> None:
        assert selfplay(node_selector={"pool": "a"})["spec"]["nodeSelector"] == {"pool": "a"}
        assert "nodeSelector" not in selfplay()["spec"]

    def test_arm64_images_widen_the_affinity(self) -> None:
        settings = WorkloadSettings(allowed_archs=("amd64", "arm64"))
        pod = build_export_pod(attempt=attempt(), settings=settings)
        terms = pod["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        assert terms[0]["matchExpressions"][0]["values"] == ["amd64", "arm64"]

    def test_pull_secrets_and_host_path_from_settings(self) -> None:
        settings = WorkloadSettings(image_pull_secrets=("regcred",), data_host_path="/mnt/rr")
        pod = build_export_pod(attempt=attempt(), settings=settings)
        assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
        assert pod["spec"]["volumes"][0]["hostPath"]["path"] == "/mnt/rr"

    def test_long_owner_names_get_a_valid_label_value(self) -> None:
        owner = replace(OWNER, name="x" * 100)
        labels = selfplay(owner=owner)["metadata"]["labels"]
        assert len(labels[LABEL_OWNER_NAME]) <= 63


class TestKindSpecificEnv:
    def test_selfplay(self) -> None:
        pod = selfplay(EngineMode.GUMBEL_MCTS)
        env = env_of(pod)
        assert env[Env.ENGINE_MODE] == "gumbel-mcts"
        assert env[Env.GAMES] == "500"
        assert env[Env.MODEL_PATH] == "/data/models/square8_2p/g3.pt"
        assert env[Env.OUTPUT_DIR] == "/data"
        assert container(pod)["command"][1] == "scripts/generate_gumbel_selfplay.py"
        assert pod["metadata"]["name"] == "sq8-sp-1"

    def test_cpu_selfplay_runs_the_gpu_selfplay_script(self) -> None:
        pod = selfplay(EngineMode.HEURISTIC, gpus=0)
        assert container(pod)["command"][1] == "scripts/run_gpu_selfplay.py"

    def test_export(self) -> None:
        pod = build_export_pod(attempt=attempt(), settings=SETTINGS)
        assert env_of(pod)[Env.OUTPUT_DIR] == "/data"
        assert pod["metadata"]["name"] == "sq8-ex-1"

    def test_single_node_training(self) -> None:
        pod = build_training_pod(attempt=attempt(number=2), settings=SETTINGS, model_path="m.pt")
        env = env_of(pod)
        assert env[Env.OUTPUT_DIR] == "/data"
        assert env[Env.MODEL_PATH] == "m.pt"
        assert Env.WORLD_SIZE not in env
        assert pod["metadata"]["name"] == "sq8-tr-2"

    def test_distributed_training_rank(self) -> None:
        pod = build_training_pod(
            attempt=attempt(),
            settings=SETTINGS,
            distributed=Distributed(master_addr="sq8-tr-1-0.rendezvous", world_size=4, node_rank=2),
        )
        env = env_of(pod)
        assert env[Env.MASTER_ADDR] == "sq8-tr-1-0.rendezvous"
        assert env[Env.MASTER_PORT] == "29500"
        assert (env[Env.WORLD_SIZE], env[Env.NODE_RANK]) == ("4", "2")
        assert (env[Env.SHARD], env[Env.SHARDS]) == ("2", "4")
        assert pod["metadata"]["name"] == "sq8-tr-1-2"

    def test_gauntlet_shard(self) -> None:
        pod = gauntlet(shard=3, shards=4)
        env = env_of(pod)
        assert env[Env.OPPONENTS] == "/data/models/square8_2p/g3.pt,heuristic"
        assert env[Env.GAMES] == "50"
        assert env[Env.MODEL_PATH] == "/data/models/square8_2p/g4.pt"
        assert (env[Env.SHARD], env[Env.SHARDS]) == ("3", "4")
        assert pod["metadata"]["name"] == "sq8-ga-1-3"

    def test_single_shard_gauntlet_has_no_shard_suffix(self) -> None:
        assert gauntlet()["metadata"]["name"] == "sq8-ga-1"

    def test_gauntlet_shards_play_different_seeds(self) -> None:
        seeds = {env_of(gauntlet(shard=i, shards=3))[Env.SEED] for i in range(3)}
        assert len(seeds) == 3


class TestNames:
    @pytest.mark.parametrize(
        ("owner", "kind", "attempt_no", "shard", "expected"),
        [
            pytest.param("sq8", JobKind.SELFPLAY, 1, None, "sq8-sp-1", id="selfplay"),
            pytest.param("run", JobKind.EXPORT, 2, None, "run-ex-2", id="export"),
            pytest.param("run", JobKind.TRAINING, 3, 0, "run-tr-3-0", id="training-rank"),
            pytest.param("run", JobKind.GAUNTLET, 1, 7, "run-ga-1-7", id="gauntlet-shard"),
        ],
    )
    def test_pattern(
        self, owner: str, kind: JobKind, attempt_no: int, shard: int | None, expected: str
    ) -> None:
        assert pod_name(owner=owner, kind=kind, attempt=attempt_no, shard=shard) == expected

    def test_long_owner_is_truncated_with_a_stable_hash(self) -> None:
        owner = "square19-4p-" + "very-long-name-" * 6
        name = pod_name(owner=owner, kind=JobKind.GAUNTLET, attempt=12, shard=3)
        assert len(name) <= 63
        assert name.endswith("-ga-12-3")
        assert name == pod_name(owner=owner, kind=JobKind.GAUNTLET, attempt=12, shard=3)
        other = pod_name(owner=owner + "x", kind=JobKind.GAUNTLET, attempt=12, shard=3)
        assert other != name

    def test_dotted_owner_does_not_collide_with_dashed_owner(self) -> None:
        dotted = pod_name(owner="a.b", kind=JobKind.SELFPLAY, attempt=1)
        dashed = pod_name(owner="a-b", kind=JobKind.SELFPLAY, attempt=1)
        assert dashed == "a-b-sp-1"
        assert dotted != dashed
        assert DNS_LABEL.match(dotted)

    @given(
        owner=st.text(min_size=1, max_size=253),
        kind=st.sampled_from(list(JobKind)),
        attempt_no=st.integers(min_value=1, max_value=10_000),
        shard=st.one_of(st.none(), st.integers(min_value=0, max_value=999)),
    )
    def test_always_a_valid_dns_label(
        self, owner: str, kind: JobKind, attempt_no: int, shard: int | None
    ) -> None:
        name = pod_name(owner=owner, kind=kind, attempt=attempt_no, shard=shard)
        assert len(name) <= 63
        assert DNS_LABEL.match(name), name
        assert name != pod_name(owner=owner, kind=kind, attempt=attempt_no + 1, shard=shard)

    @pytest.mark.parametrize(
        ("text", "expected_len", "unchanged"),
        [
            pytest.param("sq8", 3, True, id="short"),
            pytest.param("a.b-c_d", 7, True, id="label-chars"),
            pytest.param("x" * 63, 63, True, id="exactly-63"),
            pytest.param("x" * 64, 63, False, id="64-truncated"),
            pytest.param("x" * 253, 63, False, id="subdomain-length"),
        ],
    )
    def test_label_value(self, text: str, expected_len: int, unchanged: bool) -> None:
        value = label_value(text)
        assert len(value) == expected_len
        assert (value == text) is unchanged

    def test_attempt_seed_is_deterministic_per_attempt(self) -> None:
        seed = attempt_seed(owner_uid="u", attempt=1)
        assert seed == attempt_seed(owner_uid="u", attempt=1)
        assert seed != attempt_seed(owner_uid="u", attempt=2)
        assert 0 <= seed < 2**31


class TestDemand:
    @pytest.mark.parametrize(
        ("kind", "mode", "gpus", "expected_gpus", "cpu", "memory_gib"),
        [
            pytest.param(JobKind.SELFPLAY, EngineMode.MCTS, 1, 1, 8000, 0, id="hybrid"),
            pytest.param(JobKind.SELFPLAY, EngineMode.HEURISTIC, 0, 0, 4000, 0, id="cpu"),
            pytest.param(JobKind.EXPORT, None, 3, 0, 2000, 0, id="export-never-gpu"),
            pytest.param(JobKind.TRAINING, None, 0, 1, 4000, 8, id="training-8gib"),
            pytest.param(JobKind.GAUNTLET, None, 1, 1, 2000, 0, id="gauntlet"),
        ],
    )
    def test_matches_the_pod(
        self,
        kind: JobKind,
        mode: EngineMode | None,
        gpus: int,
        expected_gpus: int,
        cpu: int,
        memory_gib: int,
    ) -> None:
        demand = build_demand(
            kind=kind, settings=SETTINGS, attempt=attempt(), gpus=gpus, engine_mode=mode
        )
        assert (demand.gpus, demand.cpu_millis, demand.min_memory_gib) == (
            expected_gpus,
            cpu,
            memory_gib,
        )
        assert demand.allowed_archs == frozenset({"amd64"})

    def test_carries_placement(self) -> None:
        demand = build_demand(
            kind=JobKind.GAUNTLET,
            settings=SETTINGS,
            attempt=attempt(node_selector={"pool": "x"}, tolerations=(Toleration("k", "Exists"),)),
            gpus=1,
            min_gpu_class=GpuClass.A100,
        )
        assert demand.node_selector == {"pool": "x"}
        assert demand.tolerations == (Toleration("k", "Exists"),)
        assert demand.min_gpu_class is GpuClass.A100


class TestJobsPerNode:
    def test_counts_non_terminal_operator_pods(self) -> None:
        pods = [
            pod_info("a1"),
            pod_info("a2", phase=PodPhase.PENDING),
            pod_info("a3", deleting=True),
            pod_info("done", phase=PodPhase.SUCCEEDED),
            pod_info("failed", phase=PodPhase.FAILED),
            pod_info("foreign", labels={}),
            pod_info("unbound", node_name=""),
            pod_info("b1", node_name="node-b"),
        ]
        assert count_jobs_per_node(pods) == {"node-a": 3, "node-b": 1}

    def test_with_running_jobs(self) -> None:
        nodes = [NodeInfo(name="node-a", running_jobs=9), NodeInfo(name="node-c")]
        updated = with_running_jobs(nodes, pods=[pod_info("a1"), pod_info("a2")])
        assert [n.running_jobs for n in updated] == [2, 0]


class TestStalePods:
    NOW = 2000.0

    @pytest.mark.parametrize(
        ("pod", "reason", "message"),
        [
            pytest.param(
                pod_info(phase=PodPhase.PENDING, started_at=None, bound_at=1600.0),
                StaleReason.NOT_STARTED,
                "bound to node-a 400s ago and not started (dispatch timeout 300s)",
                id="bound-not-started",
            ),
            pytest.param(
                pod_info(phase=PodPhase.PENDING, started_at=None, bound_at=None, created_at=1000),
                StaleReason.NOT_STARTED,
                "bound to node-a 1000s ago",
                id="bound-time-unknown-uses-creation",
            ),
            pytest.param(
                pod_info(last_progress_at=1500.0),
                StaleReason.NO_PROGRESS,
                "without progress for 500s (heartbeat timeout 300s)",
                id="no-heartbeat",
            ),
            pytest.param(
                pod_info(last_progress_at=None, started_at=1600.0),
                StaleReason.NO_PROGRESS,
                "without progress for 400s",
                id="never-reported-progress",
            ),
            pytest.param(
                pod_info(owner_uid="gone"),
                StaleReason.ORPHANED,
                "owner gone (SelfplayJob, uid gone)",
                id="owner-gone",
            ),
            pytest.param(
                pod_info(owner_uid="", phase=PodPhase.SUCCEEDED),
                StaleReason.ORPHANED,
                "uid none",
                id="terminal-orphan",
            ),
        ],
    )
    def test_stale(self, pod: PodInfo, reason: StaleReason, message: str) -> None:
        (stale,) = detect_stale_pods([pod], live_owner_uids=frozenset({"live"}), now=self.NOW)
        assert stale.reason is reason
        assert message in stale.message

    @pytest.mark.parametrize(
        "pod",
        [
            pytest.param(pod_info(last_progress_at=1900.0), id="recent-heartbeat"),
            pytest.param(pod_info(started_at=1990.0), id="just-started"),
            pytest.param(pod_info(last_progress_at=1700.0), id="exactly-at-timeout"),
            pytest.param(
                pod_info(phase=PodPhase.PENDING, started_at=None, bound_at=1900.0),
                id="bound-recently",
            ),
            pytest.param(
                pod_info(phase=PodPhase.PENDING, node_name="", started_at=None, bound_at=None),
                id="unbound-is-the-jobs-dispatch-timeout",
            ),
            pytest.param(pod_info(phase=PodPhase.SUCCEEDED, started_at=0.0), id="finished"),
            pytest.param(pod_info(labels={}, owner_uid="gone"), id="not-ours"),
            pytest.param(pod_info(deleting=True, owner_uid="gone"), id="already-deleting"),
        ],
    )
    def test_not_stale(self, pod: PodInfo) -> None:
        assert detect_stale_pods([pod], live_owner_uids=frozenset({"live"}), now=self.NOW) == []

    def test_custom_timeouts(self) -> None:
        pod = pod_info(last_progress_at=1900.0)
        stale = detect_stale_pods(
            [pod], live_owner_uids=frozenset({"live"}), now=self.NOW, heartbeat_timeout_seconds=60
        )
        assert [s.reason for s in stale] == [StaleReason.NO_PROGRESS]

    @pytest.mark.parametrize(
        ("waited", "expired"),
        [
            pytest.param(0, False, id="just-created"),
            pytest.param(299.9, False, id="before-5-min"),
            pytest.param(300, False, id="at-5-min"),
            pytest.param(300.1, True, id="after-5-min"),
        ],
    )
    def test_dispatch_expiry(self, waited: float, expired: bool) -> None:
        assert is_dispatch_expired(1000.0, now=1000.0 + waited) is expired

    def test_dispatch_expiry_custom_timeout(self) -> None:
        assert is_dispatch_expired(0.0, now=61.0, timeout_seconds=60)


LEGAL = {
    (JobPhase.PENDING, JobEvent.DISPATCH): JobPhase.RUNNING,
    (JobPhase.PENDING, JobEvent.TIMEOUT): JobPhase.EXPIRED,
    (JobPhase.PENDING, JobEvent.REJECT): JobPhase.FAILED,
    (JobPhase.RUNNING, JobEvent.SUCCEED): JobPhase.COMPLETE,
    (JobPhase.RUNNING, JobEvent.FAIL): JobPhase.FAILED,
    (JobPhase.RUNNING, JobEvent.RETRY): JobPhase.PENDING,
    (JobPhase.COMPLETE, JobEvent.PROMOTE): JobPhase.PROMOTED,
}
ILLEGAL = [(p, e) for p in JobPhase for e in JobEvent if (p, e) not in LEGAL]


class TestStateMachine:
    @pytest.mark.parametrize(
        ("phase", "event", "after"),
        [pytest.param(p, e, a, id=f"{p}-{e}") for (p, e), a in LEGAL.items()],
    )
    def test_legal(self, phase: JobPhase, event: JobEvent, after: JobPhase) -> None:
        assert transition(phase, event) is after

    @pytest.mark.parametrize(
        ("phase", "event"), [pytest.param(p, e, id=f"{p}-{e}") for p, e in ILLEGAL]
    )
    def test_illegal(self, phase: JobPhase, event: JobEvent) -> None:
        with pytest.raises(IllegalTransition) as caught:
            transition(phase, event)
        assert (caught.value.phase, caught.value.event) == (phase, event)

    def test_illegal_message_names_the_allowed_events(self) -> None:
        with pytest.raises(IllegalTransition, match=r"'promote' in phase Running .*succeed, fail"):
            transition(JobPhase.RUNNING, JobEvent.PROMOTE)
        with pytest.raises(IllegalTransition, match=r"none \(terminal\)"):
            transition(JobPhase.FAILED, JobEvent.RETRY)

    def test_illegal_transition_is_a_value_error(self) -> None:
        assert issubclass(IllegalTransition, ValueError)

    @pytest.mark.parametrize(
        ("phase", "terminal", "finished"),
        [
            pytest.param(JobPhase.PENDING, False, False, id="pending"),
            pytest.param(JobPhase.RUNNING, False, False, id="running"),
            pytest.param(JobPhase.COMPLETE, False, True, id="complete-may-be-promoted"),
            pytest.param(JobPhase.FAILED, True, True, id="failed"),
            pytest.param(JobPhase.EXPIRED, True, True, id="expired"),
            pytest.param(JobPhase.PROMOTED, True, True, id="promoted"),
        ],
    )
    def test_terminal_and_finished(self, phase: JobPhase, terminal: bool, finished: bool) -> None:
        assert is_terminal(phase) is terminal
        assert is_finished(phase) is finished

    def test_allowed_events(self) -> None:
        assert allowed_events(JobPhase.PENDING) == (
            JobEvent.DISPATCH,
            JobEvent.TIMEOUT,
            JobEvent.REJECT,
        )

    @pytest.mark.parametrize(
        ("attempts", "backoff_limit", "exit_code", "event"),
        [
            pytest.param(1, 3, EXIT_FAILED, JobEvent.RETRY, id="first-failure-retries"),
            pytest.param(3, 3, EXIT_FAILED, JobEvent.RETRY, id="last-retry"),
            pytest.param(4, 3, EXIT_FAILED, JobEvent.FAIL, id="retries-exhausted"),
            pytest.param(1, 0, EXIT_FAILED, JobEvent.FAIL, id="no-retries"),
            pytest.param(1, 3, EXIT_BAD_INPUT, JobEvent.FAIL, id="bad-input-never-retries"),
            pytest.param(1, 3, None, JobEvent.RETRY, id="no-exit-code-evicted"),
        ],
    )
    def test_decide_failed_attempt(
        self, attempts: int, backoff_limit: int, exit_code: int | None, event: JobEvent
    ) -> None:
        decided = decide_failed_attempt(
            attempts=attempts, backoff_limit=backoff_limit, exit_code=exit_code
        )
        assert decided is event

    @given(events=st.lists(st.sampled_from(list(JobEvent)), max_size=40))
    def test_no_illegal_transition_is_reachable_from_pending(self, events: list[JobEvent]) -> None:
        phase = JobPhase.PENDING
        for event in events:
            try:
                after = transition(phase, event)
            except IllegalTransition:
                assert (phase, event) not in LEGAL
                continue
            assert LEGAL[(phase, event)] is after
            assert not is_terminal(phase), "a terminal phase accepted an event"
            phase = after
        assert phase in set(JobPhase)
