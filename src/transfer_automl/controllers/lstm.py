"""Task-conditioned autoregressive LSTM controller (Transfer AutoML, Figure 1; MNMS, Figure 2).

At step t the input is x_t = [e_action(a_{t-1}) ; e_task(task)] (25 + 25 = 50). A 2-layer LSTM of
50 units reads x_t; the skip connection adds x_t to the LSTM output so the head sees
h_t + x_t ("eases learning the unconditional part of the action distributions"), and head t
(one linear softmax layer per decision) gives the logits of decision t. Step 0 feeds a learned
start embedding in place of a previous action. All weights start uniform in [-0.08, 0.08], which
makes the initial policy close to uniform.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from transfer_automl.controllers.base import CONTROLLERS, Rollout
from transfer_automl.errors import SearchSpaceError
from transfer_automl.space import SearchSpace


@dataclass(frozen=True)
class LSTMControllerConfig:
    """Shape of the controller; the defaults are the papers'."""

    hidden_size: int = 50  # LSTM units per layer
    num_layers: int = 2  # stacked LSTM layers
    action_embedding_size: int = 25  # embedding of the previous action
    task_embedding_size: int = 25  # learned task embedding, fed at every step
    init_range: float = 0.08  # weights ~ U[-init_range, init_range]
    skip_connection: bool = True  # add the step input to the LSTM output

    def to_dict(self) -> dict:
        return asdict(self)


class LSTMController(nn.Module):
    """`sample(tasks, generator) -> Rollout`; `log_prob(actions, tasks) -> (log_probs, entropies)`."""

    kind = "lstm"

    def __init__(self, cardinalities: list[int], num_tasks: int, config: LSTMControllerConfig | None = None):
        super().__init__()
        self.config = config or LSTMControllerConfig()
        self.cardinalities = list(cardinalities)
        self.num_tasks = num_tasks
        c = self.config
        step_input = c.action_embedding_size + c.task_embedding_size
        self.start_embedding = nn.Parameter(torch.empty(c.action_embedding_size))
        # Decision t's action is fed at step t + 1, so the last decision needs no embedding.
        self.action_embeddings = nn.ModuleList(
            nn.Embedding(n, c.action_embedding_size) for n in self.cardinalities[:-1]
        )
        self.task_embeddings = nn.Embedding(num_tasks, c.task_embedding_size)
        self.lstm = nn.LSTM(step_input, c.hidden_size, num_layers=c.num_layers, batch_first=True)
        self.skip = (
            nn.Identity() if step_input == c.hidden_size else nn.Linear(step_input, c.hidden_size, bias=False)
        )
        self.heads = nn.ModuleList(nn.Linear(c.hidden_size, n) for n in self.cardinalities)
        for p in self.parameters():
            nn.init.uniform_(p, -c.init_range, c.init_range)

    @property
    def num_decisions(self) -> int:
        return len(self.cardinalities)

    def _step_input(self, prev_action: Tensor | None, step: int, task_emb: Tensor) -> Tensor:
        # prev_action: [n] or None at step 0; task_emb: [n, T] -> [n, A + T]
        if step == 0:
            action_emb = self.start_embedding.expand(task_emb.shape[0], -1)
        else:
            action_emb = self.action_embeddings[step - 1](prev_action)
        return torch.cat([action_emb, task_emb], dim=-1)

    def _head_input(self, lstm_out: Tensor, step_input: Tensor) -> Tensor:
        if self.config.skip_connection:
            return lstm_out + self.skip(step_input)
        return lstm_out

    @torch.no_grad()
    def sample(self, tasks: Tensor, generator: torch.Generator | None = None, uniform_mix: float = 0.0) -> Rollout:
        """One configuration per entry of `tasks` ([n] long), sampled step by step.

        With `uniform_mix` = gamma > 0, each action is drawn from (1 - gamma) * pi + gamma * uniform
        (exploration after transfer); the recorded log-probs and entropies are still pi's.
        """
        tasks = tasks.to(dtype=torch.long)
        task_emb = self.task_embeddings(tasks)  # [n, T]
        state = None
        prev: Tensor | None = None
        actions, log_probs, entropies = [], [], []
        for t in range(self.num_decisions):
            x = self._step_input(prev, t, task_emb).unsqueeze(1)  # [n, 1, A+T]
            out, state = self.lstm(x, state)  # out: [n, 1, H]
            logits = self.heads[t](self._head_input(out[:, 0], x[:, 0]))  # [n, C_t]
            log_p = torch.log_softmax(logits, dim=-1)
            probs = log_p.exp()
            if uniform_mix > 0:
                probs = (1.0 - uniform_mix) * probs + uniform_mix / probs.shape[-1]
            action = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # [n]
            actions.append(action)
            log_probs.append(log_p.gather(1, action[:, None]).squeeze(1))
            entropies.append(-(log_p.exp() * log_p).sum(-1))
            prev = action
        return Rollout(
            tasks=tasks,
            actions=torch.stack(actions, dim=1),
            log_probs=torch.stack(log_probs, 1).sum(1),
            entropies=torch.stack(entropies, 1).sum(1),
        )

    def step_log_probs(self, actions: Tensor, tasks: Tensor) -> list[Tensor]:
        """Teacher-forced log-softmax per decision: list of D tensors [n, C_t], with gradients."""
        n, d = actions.shape
        task_emb = self.task_embeddings(tasks.to(torch.long))  # [n, T]
        inputs = torch.stack(
            [self._step_input(actions[:, t - 1] if t else None, t, task_emb) for t in range(d)], dim=1
        )  # [n, D, A+T]
        out, _ = self.lstm(inputs)  # [n, D, H]
        heads_in = self._head_input(out, inputs)  # [n, D, H]
        return [torch.log_softmax(self.heads[t](heads_in[:, t]), dim=-1) for t in range(d)]

    def log_prob(self, actions: Tensor, tasks: Tensor) -> tuple[Tensor, Tensor]:
        """log pi(actions | task) and policy entropy, summed over decisions: ([n], [n])."""
        actions = actions.to(torch.long)
        per_step = self.step_log_probs(actions, tasks)
        log_probs = torch.stack(
            [lp.gather(1, actions[:, t : t + 1]).squeeze(1) for t, lp in enumerate(per_step)], dim=1
        ).sum(1)
        entropies = torch.stack([-(lp.exp() * lp).sum(-1) for lp in per_step], dim=1).sum(1)
        return log_probs, entropies

    def load_transferred(self, state: dict[str, Tensor], old_tasks: list[str], new_tasks: list[str]) -> None:
        """Copy a pretrained controller's weights; task embeddings follow the task names: a task
        known to the pretrained controller keeps its embedding, a new one keeps its fresh random
        initialization (Transfer AutoML, section 2.3)."""
        key = "task_embeddings.weight"
        shared = {k: v for k, v in state.items() if k != key}
        missing, unexpected = self.load_state_dict(shared, strict=False)
        if unexpected or [m for m in missing if m != key]:
            raise ValueError(f"pretrained controller does not fit: missing {missing}, unexpected {unexpected}")
        with torch.no_grad():
            for i, task in enumerate(new_tasks):
                if task in old_tasks:
                    self.task_embeddings.weight[i] = state[key][old_tasks.index(task)]

    def choice_probabilities(self, task: int, decision: int, prefix: Tensor | None = None) -> Tensor:
        """Marginal-free view for inspection: pi(decision | task, prefix of earlier actions).

        `prefix` holds the actions of decisions 0..decision-1 ([decision] long); zeros if omitted.
        """
        actions = torch.zeros(1, self.num_decisions, dtype=torch.long)
        if prefix is not None and decision:
            actions[0, :decision] = prefix[:decision]
        with torch.no_grad():
            per_step = self.step_log_probs(actions, torch.tensor([task]))
        return per_step[decision][0].exp()


def _build_lstm(space: SearchSpace, num_tasks: int, config: dict[str, Any]) -> LSTMController:
    if any(getattr(d, "condition", None) for d in space.decisions):
        raise SearchSpaceError(f"the LSTM controller needs an unconditional space; {space.name!r} has conditions")
    return LSTMController(space.cardinalities, num_tasks, LSTMControllerConfig(**config))


CONTROLLERS.register("lstm", _build_lstm)
