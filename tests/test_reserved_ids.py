"""The rule ids groups of rules count their hits under (auto, external, crowdsec: /metrics' rule_id and the
rules pane's rows) are refused for a rule of one's own, wherever a rule is named: the file, the console's
rule form, the command line's block (tests/test_cli_protocol.py).  A rule of the file named crowdsec was
counted twice beside the CrowdSec row, and one named auto added its hits to every auto-block's."""

from __future__ import annotations

import pytest

from ironpost_tui.config import settings as config
from ironpost_tui.rules.placement import GROUP_RULE_IDS
from ironpost_tui.ui.rule_fields import RuleFields, RuleInputError, parse_rule


def load(rule_id: str) -> config.Settings:
    text = f'[[ebpf.rules]]\nid = "{rule_id}"\nsrc_ip = "198.18.0.9"\naction = "drop"\n'
    return config.loads(text, "ironpost.toml", now=1_700_000_000.0)


@pytest.mark.parametrize("rule_id", GROUP_RULE_IDS)
def test_a_group_id_is_refused_in_the_file_and_the_form(rule_id: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        load(rule_id)
    assert "reserved" in err.value.message and err.value.message.count("\n") == 0
    with pytest.raises(RuleInputError) as exc:
        parse_rule(RuleFields(id=rule_id, src_ip="198.18.0.9"), now=0.0)
    assert set(exc.value.fields) == {"id"}


@pytest.mark.parametrize("rule_id", ["auto-198.18.0.9", "crowdsec-feed", "Auto", "external-1"])
def test_names_beside_them_are_fine(rule_id: str) -> None:
    """Positive controls: only the exact names are taken."""
    assert [r.id for r in load(rule_id).rules] == [rule_id]
    assert parse_rule(RuleFields(id=rule_id, src_ip="198.18.0.9"), now=0.0).id == rule_id
