"""The Chinese words the screens use for our codes, in the field's own terms."""

PLACE_LEVEL = {"city": "市", "town": "镇街", "village": "村社", "grid": "网格"}
PLACE_KIND = {
    "town": "镇",
    "street": "街道",
    "township": "乡",
    "community": "社区",
    "village": "村委",
    "comprehensive": "综合网格",
    "dedicated": "专属网格",
}
ROLE = {
    "admin": "系统管理员",
    "security_admin": "安全管理员",
    "auditor": "审计员",
    "duty_officer": "值班员",
    "operator": "坐席员",
    "center_admin": "综治中心管理员",
    "department": "职能部门",
    "supervisor": "督导人员",
    "leader": "领导",
    "gridworker": "网格员",
    "volunteer": "网格志愿者",
}
POST = {
    "grid_chief": "网格长",
    "liaison": "网格联络员",
    "full_time": "专职网格员",
    "part_time": "兼职网格员",
    "grid_supervisor": "网格监督员",
}
SOURCE = {
    "app": "网格员上报",
    "hotline": "12345热线",
    "volunteer": "志愿者上报",
    "center": "中心受理",
    "department": "部门上报",
    "leader": "领导交办",
    "open311": "市民上报",
}
KIND = {"ordinary": "普通事件", "hazard": "安全隐患", "dispute": "矛盾纠纷"}
STATE = {
    "reported": "待立案",
    "registered": "已立案",
    "dispatched": "已派遣",
    "handling": "处理中",
    "feedback": "待核查",
    "closed": "已结案",
    "rejected": "无效",
    "duplicate": "重复",
}
LEVEL = {"grid": "网格", "village": "村社", "town": "镇街中心", "city": "市中心"}
ACTION = {
    "report": "上报",
    "register": "立案",
    "reject": "作废",
    "duplicate": "判为重复",
    "dispatch": "派遣",
    "accept": "签收处理",
    "feedback": "处理反馈",
    "verify_ok": "核查通过",
    "close": "结案",
    "rework": "退回返工",
    "escalate": "流转",
    "self_close": "自办自结",
    "transfer": "转报市平台",
    "auto_reject": "超时自动作废",
    "overdue": "逾期",
    "dispatch_overdue": "派遣超时",
    "escalate_overdue": "流转超时",
    "pause": "暂停计时",
    "resume": "恢复计时",
    "merge": "合并",
    "outstanding": "标记优秀事件",
    "return": "退回",
    "extend": "申请延期",
    "extend_approve": "批准延期",
    "extend_refuse": "驳回延期",
    "relocate": "重新定位",
}
UNIT = {"minutes": "分钟", "hours": "小时", "days": "天", "work_hours": "工作时", "work_days": "工作日"}
PERSON_TYPE = {
    "community_correction": "社区矫正人员",
    "released_prisoner": "刑满释放人员",
    "mental_risk": "易肇事肇祸精神障碍患者",
    "drug_user": "吸毒人员",
    "key_youth": "重点青少年",
    "key_petitioner": "重点上访人员",
    "key_other": "其他重点人员",
    "empty_nest_elderly": "空巢老人",
}
SITE_TYPE = {"key_place": "重点场所", "group_rental": "群租房", "rental_house": "出租屋"}
FREQUENCY = {"weekly": "每周", "monthly": "每月", "quarterly": "每季度"}
ALERT_KIND = {
    "escalation_due": "待流转临期",
    "parking_due": "乱停车一小时临期",
    "self_handled_due": "自办自结当日临期",
    "overdue": "已逾期",
}
HTTP_ERRORS = {
    400: "请求有误",
    401: "请先登录",
    403: "无权访问：超出本账号的角色或辖区",
    404: "未找到（或不在本辖区内）",
    405: "不支持该请求方法",
    409: "操作冲突，请刷新后重试",
    413: "上传内容过大",
    415: "不支持的内容类型",
    422: "输入有误",
    429: "请求过于频繁，请稍后再试",
    503: "服务暂时不可用，请稍后重试",
}
