"""Every source format curate reads, registered in this one list.

To add a format: write a :class:`curate.ingest.base.SourceFormat` subclass in a module of its own
here and add an instance to ``FORMATS``. Order breaks ties in detection (more specific first).
"""

from curate.ingest.formats.alpaca import Alpaca
from curate.ingest.formats.chatdoctor import ChatDoctor
from curate.ingest.formats.gpt4all import Gpt4All
from curate.ingest.formats.kochatgpt import KoChatGPTPPO, KoChatGPTRM, KoChatGPTSFT
from curate.ingest.formats.kochatgpt_text import KoChatGPTConversation, QuestionList
from curate.ingest.formats.openai_messages import OpenAIMessages
from curate.ingest.formats.seed_tasks import SeedTasks
from curate.ingest.formats.sharegpt import ShareGPT

FORMATS = [
    SeedTasks(),
    ChatDoctor(),
    Alpaca(),
    Gpt4All(),
    KoChatGPTRM(),
    KoChatGPTSFT(),
    KoChatGPTPPO(),
    ShareGPT(),
    OpenAIMessages(),
    KoChatGPTConversation(),
    QuestionList(),
]

BY_NAME = {f.name: f for f in FORMATS}
NAMES = tuple(BY_NAME)
