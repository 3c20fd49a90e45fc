"""Snapfit app entry point (also the Hugging Face Space entry): python app.py [--host H] [--port P] [--share]."""
import argparse
import os

from engine.hub import detect_offline


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the Snapfit app.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="ask Gradio for a public link")
    args = parser.parse_args()

    offline = detect_offline()  # must run before gradio/timm import huggingface_hub (see engine/hub.py)
    from demo import build_demo, launch_kwargs

    build_demo(offline=offline).launch(server_name=args.host, server_port=args.port, share=args.share, **launch_kwargs())


if __name__ == "__main__":
    main()
