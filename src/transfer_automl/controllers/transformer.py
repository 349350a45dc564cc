"""Task-conditioned self-attention controller over (merged, conditional) spaces (Transfer NAS, Figure 2).

The agent is autoregressive over the decisions of the space. Token t, the step that decides
decision t, is the concatenation (the paper's "&")

    x_t = [ e_action(a_{t-1}) ; e_task(task) ; e_state(t) ] + p_t           (3E = 24 wide)

with e_action(a_{-1}) a learned start embedding, e_state and e_action looked up by decision NAME
(one embedding table of C + 1 rows per decision: its C choices and "inactive"), and p_t a learned
positional encoding (added, the paper's "+"). A Transformer encoder (post-norm, ReLU, no dropout,
`num_layers` layers of `num_heads` heads) reads x_0..x_t under a causal mask, and the decision's
own output layer maps its output at position t to the logits of decision t:

    pi(a_t | a_<t, task) = softmax(W_state(t) h_t + b_state(t)).

Conditional decisions. An inactive decision (its condition fails) gets action -1: it is not
sampled, contributes 0 log-prob and 0 entropy, and the next token is fed its "inactive" action
embedding, so attention still sees every position and the decision that made it inactive.

Merged spaces (`space.merge_spaces`). The root decision `search_space` is the paper's start state
S; its action embeddings are the search-space embeddings and reach the agent at token 1, like any
previous action. With `task_spaces` (one source-space name per task, in task order) the root
action of a task's trials is fixed to its space: it is not sampled and contributes 0 log-prob and
0 entropy. Without it, the root is sampled like any other decision. `set_task_spaces` rebinds
(for example after a transfer to a new task list) and updates the config.

Parameters per decision live in `decisions[<escaped name>]` (state embedding, action embedding,
output layer), so a decision shared by several spaces of a merged space has one set, and a
transfer to another space reuses them by name. Initialization: embeddings and positional
encodings ~ N(0, init_std); output layers start at zero, so the initial policy is exactly uniform
(their gradient is not zero, so they move at the first update); the encoder keeps PyTorch's
default initialization.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import torch
from torch import Tensor, nn

from transfer_automl.controllers.base import CONTROLLERS, Rollout
from transfer_automl.errors import ConfigError
from transfer_automl.space import SearchSpace, is_merged, subspace_choice_for


@dataclass(frozen=True)
class TransformerControllerConfig:
    """Shape of the agent; embedding size, layers and heads are the paper's."""

    embedding_size: int = 8  # E: state, action and task embeddings (paper: "all 8"); d_model = 3E
    num_layers: int = 2  # encoder layers (paper: two-layer attention)
    num_heads: int = 1  # attention heads (paper: single head); must divide 3E
    feedforward_size: int = 32  # width of each encoder layer's feed-forward block (not in the paper)
    init_std: float = 0.02  # embeddings ~ N(0, init_std); output layers start at 0 (uniform policy)
    task_spaces: tuple[str, ...] = ()  # merged spaces: source-space name per task; fixes the root action

    def __post_init__(self) -> None:
        if isinstance(self.task_spaces, list):
            object.__setattr__(self, "task_spaces", tuple(self.task_spaces))
        for name in ("embedding_size", "num_layers", "num_heads", "feedforward_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"transformer controller: {name} must be a positive integer, got {value!r}")
        if (3 * self.embedding_size) % self.num_heads:
            raise ConfigError(
                f"transformer controller: num_heads={self.num_heads} must divide the model width "
                f"3 * embedding_size = {3 * self.embedding_size}"
            )
        if not self.init_std > 0:
            raise ConfigError(f"transformer controller: init_std must be > 0, got {self.init_std!r}")

    @property
    def model_size(self) -> int:
        return 3 * self.embedding_size

    def to_dict(self) -> dict:
        out = asdict(self)
        out["task_spaces"] = list(self.task_spaces)
        return out


def decision_key(name: str) -> str:
    """Module key of a decision's parameters: its name with '%' and '.' escaped, prefixed so
    that no name collides with an attribute of nn.ModuleDict."""
    return "d_" + name.replace("%", "%25").replace(".", "%2E")


class _DecisionParameters(nn.Module):
    """Everything one decision owns: its state embedding, the embeddings of its C choices plus
    an "inactive" row (index C), and its output layer."""

    def __init__(self, num_choices: int, embedding_size: int, model_size: int):
        super().__init__()
        self.state = nn.Parameter(torch.empty(embedding_size))
        self.action = nn.Embedding(num_choices + 1, embedding_size)
        self.head = nn.Linear(model_size, num_choices)


class TransformerController(nn.Module):
    """`sample(tasks, generator) -> Rollout`; `log_prob(actions, tasks) -> (log_probs, entropies)`."""

    kind = "transformer"

    def __init__(self, space: SearchSpace, num_tasks: int, config: TransformerControllerConfig | None = None):
        super().__init__()
        if num_tasks < 1:
            raise ConfigError(f"transformer controller: num_tasks must be >= 1, got {num_tasks}")
        self.config = config or TransformerControllerConfig()
        self.space = space
        self.num_tasks = num_tasks
        self.cardinalities = space.cardinalities
        self.decision_keys = [decision_key(n) for n in space.names]
        c = self.config
        d_model = c.model_size
        self.start_embedding = nn.Parameter(torch.empty(c.embedding_size))
        self.task_embeddings = nn.Embedding(num_tasks, c.embedding_size)
        self.positions = nn.Parameter(torch.empty(len(space), d_model))  # one per decision
        self.decisions = nn.ModuleDict(
            {k: _DecisionParameters(n, c.embedding_size, d_model) for k, n in zip(self.decision_keys, self.cardinalities, strict=True)}
        )
        layer = nn.TransformerEncoderLayer(
            d_model, c.num_heads, dim_feedforward=c.feedforward_size, dropout=0.0, batch_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, c.num_layers, enable_nested_tensor=False)
        with torch.no_grad():
            for p in (self.start_embedding, self.task_embeddings.weight, self.positions):
                p.normal_(0.0, c.init_std)
            for module in self.decisions.values():
                module.state.normal_(0.0, c.init_std)
                module.action.weight.normal_(0.0, c.init_std)
                module.head.weight.zero_()
                module.head.bias.zero_()
        # Conditions as tensors: parent position (-1: unconditional) and the parent's allowed choices.
        structure = space.condition_structure()
        widest = max(self.cardinalities)
        parents = torch.full((len(space),), -1, dtype=torch.long)
        allowed = torch.zeros(len(space), widest, dtype=torch.bool)
        for t, cond in enumerate(structure):
            if cond is not None:
                parents[t] = cond[0]
                allowed[t, sorted(cond[1])] = True
        self.register_buffer("parents", parents, persistent=False)
        self.register_buffer("allowed", allowed, persistent=False)
        self.register_buffer("root_choices", torch.full((num_tasks,), -1, dtype=torch.long), persistent=False)
        self.set_task_spaces(c.task_spaces)

    # -- structure ----------------------------------------------------------------------------

    @property
    def num_decisions(self) -> int:
        return len(self.cardinalities)

    @property
    def root_is_forced(self) -> bool:
        return bool((self.root_choices >= 0).all())

    def set_task_spaces(self, task_spaces: Sequence[str]) -> None:
        """Bind task i to source space task_spaces[i] of a merged space (root action fixed); an
        empty sequence unbinds (root sampled). Updates `config.task_spaces`."""
        task_spaces = tuple(task_spaces)
        if task_spaces:
            if not is_merged(self.space):
                raise ConfigError(f"task_spaces needs a merged space; {self.space.name!r} has no 'search_space' root")
            if len(task_spaces) != self.num_tasks:
                raise ConfigError(f"task_spaces names {len(task_spaces)} spaces for {self.num_tasks} tasks")
            choices = [subspace_choice_for(self.space, s) for s in task_spaces]
            self.root_choices.copy_(torch.tensor(choices, dtype=torch.long))
        else:
            self.root_choices.fill_(-1)
        self.config = replace(self.config, task_spaces=task_spaces)

    def decision_parameters(self, name: str) -> nn.Module:
        """The module holding decision `name`'s state embedding (`.state`), action embeddings
        (`.action`) and output layer (`.head`)."""
        return self.decisions[decision_key(name)]

    def _active_at(self, t: int, actions: Tensor) -> Tensor:
        # actions: [n, D] (columns < t filled, -1 where inactive) -> [n] bool
        parent = int(self.parents[t])
        if parent < 0:
            return torch.ones(actions.shape[0], dtype=torch.bool, device=actions.device)
        chosen = actions[:, parent]
        return (chosen >= 0) & self.allowed[t][chosen.clamp(min=0)]

    def active_mask(self, actions: Tensor) -> Tensor:
        """[n, D] bool: which decisions exist given the actions (computed from the parents)."""
        return torch.stack([self._active_at(t, actions) for t in range(self.num_decisions)], dim=1)

    # -- tokens and encoder -------------------------------------------------------------------

    def _token(self, t: int, prev_action: Tensor | None, task_emb: Tensor) -> Tensor:
        # prev_action: [n] long (-1: inactive) or None at t = 0; task_emb: [n, E] -> [n, 3E]
        n = task_emb.shape[0]
        if t == 0:
            action_emb = self.start_embedding.expand(n, -1)
        else:
            prev_card = self.cardinalities[t - 1]
            index = torch.where(prev_action < 0, prev_card, prev_action)  # -1 -> the "inactive" row
            action_emb = self.decisions[self.decision_keys[t - 1]].action(index)
        state_emb = self.decisions[self.decision_keys[t]].state.expand(n, -1)
        return torch.cat([action_emb, task_emb, state_emb], dim=-1) + self.positions[t]

    def _encode(self, tokens: Tensor) -> Tensor:
        # tokens: [n, L, 3E] -> [n, L, 3E]; position i attends to positions <= i
        length = tokens.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device, dtype=tokens.dtype)
        return self.encoder(tokens, mask=mask, is_causal=True)

    # -- sampling and scoring -----------------------------------------------------------------

    @torch.no_grad()
    def sample(self, tasks: Tensor, generator: torch.Generator | None = None, uniform_mix: float = 0.0) -> Rollout:
        """One configuration per entry of `tasks` ([n] long), sampled decision by decision.

        With `uniform_mix` = gamma > 0 each action is drawn from (1 - gamma) * pi + gamma * uniform
        (exploration after transfer); the recorded log-probs and entropies are still pi's.
        """
        tasks = tasks.to(dtype=torch.long)
        n, d = tasks.shape[0], self.num_decisions
        task_emb = self.task_embeddings(tasks)  # [n, E]
        actions = torch.full((n, d), -1, dtype=torch.long)
        log_probs = torch.zeros(n)
        entropies = torch.zeros(n)
        tokens: list[Tensor] = []
        for t in range(d):
            tokens.append(self._token(t, actions[:, t - 1] if t else None, task_emb))
            if t == 0 and self.root_is_forced:
                actions[:, 0] = self.root_choices[tasks]
                continue
            active = self._active_at(t, actions)  # [n]
            if not active.any():
                continue
            h = self._encode(torch.stack(tokens, dim=1))[:, -1]  # [n, 3E]
            log_p = torch.log_softmax(self.decisions[self.decision_keys[t]].head(h), dim=-1)  # [n, C_t]
            probs = log_p.exp()
            if uniform_mix > 0:
                probs = (1.0 - uniform_mix) * probs + uniform_mix / probs.shape[-1]
            drawn = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # [n]
            actions[:, t] = torch.where(active, drawn, -1)
            log_probs += torch.where(active, log_p.gather(1, drawn[:, None]).squeeze(1), 0.0)
            entropies += torch.where(active, -(log_p.exp() * log_p).sum(-1), 0.0)
        return Rollout(tasks=tasks, actions=actions, log_probs=log_probs, entropies=entropies)

    def step_log_probs(self, actions: Tensor, tasks: Tensor) -> list[Tensor]:
        """Teacher-forced log-softmax per decision: D tensors [n, C_t], with gradients. Rows of
        inactive decisions are computed too; mask them with `active_mask(actions)`."""
        actions = actions.to(torch.long)
        task_emb = self.task_embeddings(tasks.to(torch.long))  # [n, E]
        tokens = torch.stack(
            [self._token(t, actions[:, t - 1] if t else None, task_emb) for t in range(self.num_decisions)], dim=1
        )  # [n, D, 3E]
        h = self._encode(tokens)  # [n, D, 3E]
        return [torch.log_softmax(self.decisions[k].head(h[:, t]), dim=-1) for t, k in enumerate(self.decision_keys)]

    def _check_actions(self, actions: Tensor, tasks: Tensor) -> Tensor:
        """Validate a batch of actions against the conditions; returns the active mask [n, D]."""
        if actions.dim() != 2 or actions.shape[1] != self.num_decisions:
            raise ValueError(f"actions must be [n, {self.num_decisions}], got {list(actions.shape)}")
        active = self.active_mask(actions)
        cards = torch.tensor(self.cardinalities)
        bad = (active & ((actions < 0) | (actions >= cards))) | (~active & (actions != -1))
        if bad.any():
            row, col = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"decision {self.space.names[col]!r} of trial {row}: action {int(actions[row, col])} does not fit "
                f"(it is {'active' if active[row, col] else 'inactive, which needs -1'})"
            )
        if self.root_is_forced:
            expected = self.root_choices[tasks.to(torch.long)]
            if not torch.equal(actions[:, 0], expected):
                raise ValueError("actions pick another source space than the one their task is bound to")
        return active

    def log_prob(self, actions: Tensor, tasks: Tensor) -> tuple[Tensor, Tensor]:
        """log pi(actions | task) and policy entropy, summed over the sampled (active, not
        forced) decisions: ([n], [n])."""
        actions = actions.to(torch.long)
        active = self._check_actions(actions, tasks)  # [n, D]
        if self.root_is_forced:
            active = active.clone()
            active[:, 0] = False
        per_step = self.step_log_probs(actions, tasks)
        chosen = torch.stack(
            [lp.gather(1, actions[:, t : t + 1].clamp(min=0)).squeeze(1) for t, lp in enumerate(per_step)], dim=1
        )  # [n, D]
        entropy = torch.stack([-(lp.exp() * lp).sum(-1) for lp in per_step], dim=1)  # [n, D]
        zero = torch.zeros((), dtype=chosen.dtype)
        return torch.where(active, chosen, zero).sum(1), torch.where(active, entropy, zero).sum(1)

    def choice_probabilities(self, task: int, decision: int, prefix: Sequence[int] | Tensor | None = None) -> Tensor:
        """pi(decision | task, prefix), for inspection: [C_decision].

        `prefix` holds the actions of decisions 0..decision-1 (-1 where inactive). If omitted: the
        task's bound space at the root (if any), the first choice of every active decision and
        -1 for the inactive ones. A forced root gives a one-hot vector.
        """
        d = self.num_decisions
        if not 0 <= decision < d:
            raise ValueError(f"decision must be in 0..{d - 1}, got {decision}")
        actions = torch.full((1, d), -1, dtype=torch.long)
        if prefix is not None:
            given = torch.as_tensor(prefix, dtype=torch.long).flatten()
            if given.numel() < decision:
                raise ValueError(f"prefix needs the {decision} actions before decision {decision}, got {given.numel()}")
            actions[0, :decision] = given[:decision]
        else:
            for t in range(decision):
                if t == 0 and self.root_is_forced:
                    actions[0, 0] = self.root_choices[task]
                elif self._active_at(t, actions)[0]:
                    actions[0, t] = 0
        if not self._active_at(decision, actions)[0]:
            raise ValueError(f"decision {self.space.names[decision]!r} is inactive after prefix {actions[0, :decision].tolist()}")
        if decision == 0 and self.root_is_forced:
            return nn.functional.one_hot(self.root_choices[task], self.cardinalities[0]).float()
        with torch.no_grad():
            per_step = self.step_log_probs(actions, torch.tensor([task]))
        return per_step[decision][0].exp()

    # -- transfer -----------------------------------------------------------------------------

    def load_transferred(self, state: dict[str, Tensor], old_tasks: list[str], new_tasks: list[str]) -> None:
        """Copy a pretrained agent's weights (Transfer NAS, section 3: "the agent's parameters and
        the relevant embeddings are reloaded, the new embeddings are randomly initialized").

        The encoder and the start embedding must fit exactly. Decision parameters follow the
        decision names: a decision the pretrained agent knew is copied (its shapes must match),
        a new decision keeps its fresh initialization, a decision this space lacks is ignored.
        Positional encodings are copied for the positions both spaces have. Task embeddings
        follow the task names: a known task keeps its embedding, a new one its random init.
        """
        task_key = "task_embeddings.weight"
        own = self.state_dict()
        core = [k for k in own if not k.startswith("decisions.") and k not in (task_key, "positions")]
        missing = [k for k in core if k not in state]
        mismatched = [
            f"{k} {list(state[k].shape)} vs {list(own[k].shape)}"
            for k in own if k in state and k not in (task_key, "positions") and state[k].shape != own[k].shape
        ]
        if missing or mismatched or "positions" not in state or state["positions"].shape[1:] != own["positions"].shape[1:]:
            raise ValueError(
                f"pretrained controller does not fit: missing {missing}, mismatched shapes {mismatched}"
                + ("" if "positions" in state and state["positions"].shape[1:] == own["positions"].shape[1:]
                   else ", positions of another width")
            )
        with torch.no_grad():
            for k, value in own.items():
                if k == task_key:
                    continue
                if k == "positions":
                    rows = min(value.shape[0], state[k].shape[0])
                    value[:rows] = state[k][:rows]
                elif k in state:
                    value.copy_(state[k])
            for i, task in enumerate(new_tasks):
                if task in old_tasks:
                    self.task_embeddings.weight[i] = state[task_key][old_tasks.index(task)]


def _build_transformer(space: SearchSpace, num_tasks: int, config: dict) -> TransformerController:
    return TransformerController(space, num_tasks, TransformerControllerConfig(**config))


CONTROLLERS.register("transformer", _build_transformer)
