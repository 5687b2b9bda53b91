"""The screening agent: a livekit-agents worker that runs the prescreening conversation.

- `python -m agent start|dev|console` runs the worker (`agent.worker.run(argv)`).
- `agent.flow` is the conversation as a pure state machine; `agent.templates` the localised
  fixed wording; `agent.languages` the 32 languages; `agent.simulate.run_text_screening` runs
  the real agent in text mode with any LLM.
"""
