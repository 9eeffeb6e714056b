"""Campaigns: every target x assessment x setting, run on an engine, kept in a store.

>>> from bastion.campaign import load_campaign, expand, Store, make_engine, run_campaign
>>> spec, root = load_campaign("examples/campaign/campaign.yaml")  # doctest: +SKIP
>>> summary = run_campaign(spec, root, Store.open("sqlite:///c.db"), make_engine("processes"))

See ``docs/campaigns.md``.
"""

from bastion.campaign.engines import ENGINES, Engine, make_engine
from bastion.campaign.runner import RunSummary, run_campaign
from bastion.campaign.spec import CampaignSpec, Cell, expand, load_campaign
from bastion.campaign.store import Store

__all__ = [
    "ENGINES",
    "CampaignSpec",
    "Cell",
    "Engine",
    "RunSummary",
    "Store",
    "expand",
    "load_campaign",
    "make_engine",
    "run_campaign",
]
