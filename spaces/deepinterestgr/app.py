"""DeepInterestGR Space: recommend with a generative recommender, explore its semantic IDs, mine item intents.

Configured by environment variables only (the page never names a file):
    DEEPINTERESTGR_RUN=runs/quickstart                      a `deepinterestgr pipeline` output folder
    DEEPINTERESTGR_MODEL=... DEEPINTERESTGR_DATASET=...     or a pushed recommender + dataset (Hub ids or folders)
    DEEPINTERESTGR_MODEL_REVISION / _DATASET_REVISION       pin them
    DEEPINTERESTGR_MINER=local:HuggingFaceTB/SmolLM2-135M-Instruct   optional: the Mine tab's model
Run: `DEEPINTERESTGR_RUN=runs/quickstart python spaces/deepinterestgr/app.py` (127.0.0.1:7860; GRADIO_SERVER_NAME
and GRADIO_SERVER_PORT change it). The logic lives in `deepinterestgr.space`; this file is the layout.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

import gradio as gr

from deepinterestgr.errors import DeepInterestGRError
from deepinterestgr.space import InputError, Miner, SpaceData, load_from_env
from deepinterestgr.space import explorer as ex
from deepinterestgr.space import mine as mn
from deepinterestgr.space import recommend as rc

MAX_USER_CHOICES = 1000  # listed in the dropdown; any other test user id can be typed


def _shown_errors(fn: Callable) -> Callable:
    """Input errors become a message on the page (and a clear error for API clients), not a traceback."""

    @functools.wraps(fn)
    def wrapped(*args):
        try:
            return fn(*args)
        except (InputError, DeepInterestGRError) as err:
            raise gr.Error(str(err)) from None

    return wrapped


def header(data: SpaceData) -> str:
    enrichment = (
        "mined descriptors" + (" and judged quality" if data.has_quality else "")
        if data.has_descriptors
        else "no mined descriptors (shown as —; run `deepinterestgr mine` and `judge` to add them)"
    )
    return (
        "# DeepInterestGR\nGenerative recommendation with intent-enriched semantic IDs: the model *writes* the SID "
        f"of the next item, constrained to the catalogue.\n\nShowing **{data.source}**: {len(data.items):,} items, "
        f"{len(data.users):,} test users, {enrichment}; the model reads the last {data.max_history} items."
    )


def build_demo(data: SpaceData, miner: Miner) -> gr.Blocks:
    """The three tabs over already loaded data."""

    # ----- Recommend -----
    @_shown_errors
    def user_history(user_id: str):
        user = rc.user_history(data, user_id)
        history = list(user.history)
        info = f"User `{user.user_id}`: {len(history)} item(s) in the model's window; held-out next item hidden."
        return " ".join(history), rc.history_frame(data, history), info

    @_shown_errors
    def recommend(history_text: str, user_id: str | None, exclude_history: bool = True):
        if not (history_text or "").strip() and (user_id or "").strip():  # a user picked, history not loaded yet
            history_text = " ".join(rc.user_history(data, user_id).history)
        history = rc.parse_history(data, history_text)
        rows = rc.recommend(data, history, exclude_history=exclude_history)
        user = data.users.get((user_id or "").strip())
        return rc.recommendations_frame(rows), rc.history_frame(data, history), rc.summary(data, history, rows, user)

    @_shown_errors
    def search_items(query: str):
        found = rc.search_items(data, query)
        choices = [(f"{i.item_id} — {i.text}", i.item_id) for i in found]
        return rc.search_frame(data, found), gr.Dropdown(choices=choices, value=choices[0][1] if choices else None)

    @_shown_errors
    def add_item(history_text: str, item_id: str | None):
        return rc.add_item(data, history_text, item_id)

    def history_choices(history_text: str):
        ids = [i for i in (history_text or "").split() if i in data.items]
        return gr.Dropdown(choices=list(dict.fromkeys(ids)), value=ids[-1] if ids else None)

    # ----- SID explorer -----
    def view(exploration: ex.Exploration):
        choices = [(f"{c.token} · {c.items} item(s)", c.token) for c in exploration.children]
        return (
            ex.prefix_tokens(exploration.prefix),
            exploration.heading,
            ex.children_frame(exploration.children),
            exploration.items,
            ex.collisions_frame(exploration.collisions),
            gr.Dropdown(choices=choices, value=None),
        )

    @_shown_errors
    def sid_prefix(prefix: str):
        return view(ex.explore(data, prefix))

    @_shown_errors
    def sid_up(prefix: str):
        codes = ex.parse_prefix(data.sid_map, prefix)
        return view(ex.explore(data, ex.prefix_tokens(codes[:-1])))

    def sid_down(prefix: str, token: str | None):
        current = ex.prefix_tokens(ex.parse_prefix(data.sid_map, prefix)) if prefix else ""
        if not token or not token.startswith(current) or token == current:  # a stale pick from the level above
            token = current
        return sid_prefix(token)

    # ----- Mine -----
    @_shown_errors
    def mine(text: str, image: str | None = None):
        result = miner.mine(text, image=image)
        return result.caption or "—", mn.descriptors_frame(result), mn.mined_summary(result)

    @_shown_errors
    def catalogue_text(item_id: str):
        return mn.catalogue_text(data.items, item_id)

    root = ex.explore(data, "")
    root_view = view(root)
    user_ids = list(data.users)
    with gr.Blocks(title="DeepInterestGR", analytics_enabled=False) as demo:
        gr.Markdown(header(data))
        with gr.Tabs():
            with gr.Tab("Recommend", id="recommend"):
                with gr.Row():
                    user = gr.Dropdown(
                        choices=user_ids[:MAX_USER_CHOICES],
                        value=None,
                        label=f"Test user ({len(user_ids):,}; type to filter, or paste any test user id)",
                        allow_custom_value=True,
                        elem_id="user",
                        scale=2,
                    )
                    recommend_button = gr.Button("Recommend", variant="primary", elem_id="recommend-button", scale=1)
                exclude_history = gr.Checkbox(
                    value=True,
                    label="Leave out items already in the history (untick where users buy the same item again)",
                    elem_id="exclude-history",
                )
                history = gr.Textbox(
                    label=f"History: item ids, oldest first (at most {data.max_history})",
                    lines=2,
                    max_length=data.max_history * (rc.MAX_ID_CHARS + 1),
                    elem_id="history-ids",
                )
                with gr.Accordion("Compose a history: search items", open=False):
                    with gr.Row():
                        query = gr.Textbox(
                            label="Search brand, categories, title or an item id",
                            placeholder="e.g. shampoo, nail polish, OPI",
                            max_length=rc.MAX_QUERY_CHARS,
                            scale=3,
                        )
                        search_button = gr.Button("Search", scale=1)
                    results = gr.Dataframe(headers=rc.SEARCH_COLUMNS, label="Matches", interactive=False)
                    with gr.Row():
                        pick = gr.Dropdown(label="Item to add", choices=[], scale=3)
                        add_button = gr.Button("Add to history", scale=1)
                    with gr.Row():
                        drop = gr.Dropdown(label="Item to remove", choices=[], scale=3)
                        remove_button = gr.Button("Remove", scale=1)
                        clear_button = gr.Button("Clear history", scale=1)
                summary = gr.Markdown(elem_id="recommend-summary")
                recommendations = gr.Dataframe(
                    headers=rc.RECOMMENDATION_COLUMNS,
                    label="Top 10",
                    interactive=False,
                    wrap=True,
                    max_height=1200,  # all ten rows rendered (the table is virtualised)
                    column_widths=["5%", "10%", "24%", "14%", "18%", "6%", "16%", "7%"],
                    elem_id="recommendations",
                )
                history_table = gr.Dataframe(
                    headers=rc.HISTORY_COLUMNS,
                    label="History (what the model reads)",
                    interactive=False,
                    wrap=True,
                    column_widths=["7%", "11%", "36%", "16%", "22%", "8%"],
                    elem_id="history",
                )
            with gr.Tab("SID explorer", id="explorer"):
                gr.Markdown(ex.overview(data.sid_map))
                with gr.Row():
                    prefix = gr.Textbox(
                        value=root_view[0],
                        label="Prefix (tokens like <a_12><b_5>, or numbers like 12 5; empty: the root)",
                        max_length=ex.MAX_PREFIX_CHARS,
                        elem_id="sid-prefix",
                        scale=3,
                    )
                    show_button = gr.Button("Show", scale=1)
                    up_button = gr.Button("Up one level", scale=1)
                down = gr.Dropdown(
                    choices=root_view[5].choices,
                    value=None,
                    label="Go down to",
                    allow_custom_value=True,  # its value may be a code of the level above until it is refreshed
                    elem_id="sid-down",
                    interactive=True,
                )
                heading = gr.Markdown(root_view[1], elem_id="sid-heading")
                children = gr.Dataframe(
                    value=root_view[2], label="Codes one level down", interactive=False, elem_id="sid-children"
                )
                items = gr.Dataframe(
                    value=root_view[3],
                    label=f"Items under the prefix (first {ex.MAX_LISTED_ITEMS})",
                    interactive=False,
                    elem_id="sid-items",
                )
                collisions = gr.Dataframe(
                    value=root_view[4],
                    label=f"Collisions under the prefix: shared codes, told apart by a suffix (largest "
                    f"{ex.MAX_LISTED_COLLISIONS})",
                    interactive=False,
                    wrap=True,
                    column_widths=["20%", "8%", "72%"],
                    elem_id="sid-collisions",
                )
            with gr.Tab("Mine", id="mine"):
                gr.Markdown(miner.describe(), elem_id="mine-status")
                with gr.Row():
                    text = gr.Textbox(
                        label="Item text (lines like Title:, Brand:, Categories:, Description:)",
                        lines=6,
                        max_length=mn.MAX_TEXT_CHARS,
                        scale=3,
                        elem_id="mine-text",
                    )
                    image = gr.Image(type="filepath", label="Photo (for a caption)", visible=miner.can_caption, scale=1)
                with gr.Row():
                    catalogue_id = gr.Textbox(label="Or load a catalogue item by id", max_length=rc.MAX_ID_CHARS)
                    load_button = gr.Button("Load item text")
                    mine_button = gr.Button("Mine", variant="primary", interactive=miner.configured)
                mined_summary = gr.Markdown()
                caption = gr.Textbox(label="Caption", interactive=False)
                descriptors = gr.Dataframe(headers=mn.DESCRIPTOR_COLUMNS, label="Descriptors", interactive=False)

        user.change(user_history, user, [history, history_table, summary], api_name="user_history")
        recommend_button.click(
            recommend, [history, user, exclude_history], [recommendations, history_table, summary], api_name="recommend"
        )
        gr.on([search_button.click, query.submit], search_items, query, [results, pick], api_name="search_items")
        add_button.click(add_item, [history, pick], history, api_name="add_item")
        remove_button.click(rc.remove_item, [history, drop], history, api_visibility="private")
        clear_button.click(lambda: "", None, history, api_visibility="private")
        history.change(history_choices, history, drop, api_visibility="private")
        outputs = [prefix, heading, children, items, collisions, down]
        gr.on([show_button.click, prefix.submit], sid_prefix, prefix, outputs, api_name="sid_prefix")
        up_button.click(sid_up, prefix, outputs, api_visibility="private")
        down.input(sid_down, [prefix, down], outputs, api_visibility="private")
        mine_inputs = [text, image] if miner.can_caption else [text]
        mine_button.click(
            mine, mine_inputs, [caption, descriptors, mined_summary], api_name="mine", concurrency_limit=1
        )
        load_button.click(catalogue_text, catalogue_id, text, api_name="item_text")
    return demo


def main() -> None:
    try:
        miner = Miner.from_env()  # settings first: a typo there should not wait for the model to load
        data = load_from_env()
    except (DeepInterestGRError, OSError) as err:  # OSError: transformers cannot find or read the model
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    demo = build_demo(data, miner)
    demo.queue(default_concurrency_limit=2).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )


if __name__ == "__main__":
    main()
